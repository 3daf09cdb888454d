"""Dense functional correspondence: function-conditioned head, training, inference and metrics."""
