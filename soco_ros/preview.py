"""The node's pipeline outside the node, for ``soco demo edit``'s "try it" (no rclpy here): the node's parameters
(defaults, a params file such as config/soco.yaml, overrides) -> :class:`~soco_ros.processor.FrameProcessor`, so a
demo is tried with exactly the matcher, mask source and pipeline settings the node will build from them."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from correspondence.errors import ConfigError

from . import parameters as P
from .processor import Frame, FrameProcessor


def node_parameters(params_file: str | Path | None = None, **overrides: Any) -> dict[str, Any]:
    """Defaults, then the ``ros__parameters`` of a node params file (any node-name key), then ``overrides``;
    every value judged by the node's own :func:`~soco_ros.parameters.validate`."""
    params = P.defaults()
    if params_file:
        import yaml

        data = yaml.safe_load(Path(params_file).read_text(encoding="utf-8")) or {}
        for section in data.values():
            if isinstance(section, dict) and isinstance(section.get("ros__parameters"), dict):
                params.update({P.RENAMED.get(k, k): v for k, v in section["ros__parameters"].items()
                               if P.RENAMED.get(k, k) in P.BY_NAME})
    params.update(overrides)
    for name, value in params.items():
        params[name] = P.coerce(name, value)
        problem = P.validate(name, params[name], params)
        if problem:
            raise ConfigError(f"{params_file or 'node parameters'}: {problem}")
    return params


class NodePreview:
    """``preview(demo, rgb, depth, intrinsics) -> FrameResult`` on the node's :class:`FrameProcessor`. The model is
    built once; frames without depth run with ``use_depth`` off, as the node would be configured for a camera
    without depth (its automatic mask source then does not ask for depth)."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self._processors: dict[bool, FrameProcessor] = {}
        self._lock = threading.Lock()

    def _processor(self, with_depth: bool) -> FrameProcessor:
        if with_depth not in self._processors:
            other = next(iter(self._processors.values()), None)
            params = {**self.params, "use_depth": bool(self.params["use_depth"]) and with_depth}
            self._processors[with_depth] = FrameProcessor(params, matcher=other.matcher if other else None)
        return self._processors[with_depth]

    def __call__(self, demo, rgb, depth=None, intrinsics=None):
        with self._lock:
            three_d = depth is not None and intrinsics is not None
            processor = self._processor(three_d)
            processor.install_demo(demo, str(demo.source))
            frame = Frame(rgb, 0, "preview", depth if three_d else None, intrinsics if three_d else None)
            return processor.process(frame).result
