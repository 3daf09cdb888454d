"""Deployment exports of the backbones and the functional head (ONNX, TensorRT).

Kept out of :mod:`correspondence` so the core library never needs onnx/tensorrt to import. The exporters land
with the edge-deployment issue; :class:`correspondence.backbones.vit.DinoViT` already resizes its positional
embedding once per grid, which is what a static-shape export freezes as a constant.
"""
