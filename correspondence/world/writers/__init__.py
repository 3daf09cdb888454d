"""Writers and readers of dataset formats (HANDAL/BOP, functional-head training pairs) for procedural views."""
