"""A procedural RGB-D object world with exact ground truth (keypoints, functional parts, poses, correspondences).

Real SOCO/HANDAL data and pretrained weights cannot always be had; here every correspondence is known exactly,
so the world serves as test fixtures in the real dataset formats, as training data for the functional head and
as ground truth for the end-to-end 3D alignment check.
"""
