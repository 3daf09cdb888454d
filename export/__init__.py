"""Deployment exports of the backbones and the functional head (ONNX, TensorRT), each verified on export.

Kept out of :mod:`correspondence` so the core library never needs onnx/tensorrt to import; the runtimes that
load these files live in :mod:`correspondence.runtimes`. Modules: :mod:`.modules` (export-ready wrappers: frozen
positional embedding, plain attention, fp16 with fp32 LayerNorm), :mod:`.onnx_export` (trace + metadata + verify),
:mod:`.metadata`, :mod:`.verify` (checker and parity thresholds), :mod:`.inputs` (the verification image pair),
:mod:`.staging` (only a verified model reaches the requested path; a failed one is kept as ``*.rejected.*``),
:mod:`.tensorrt_build` (engine build + verification). See docs/export.md.
"""
