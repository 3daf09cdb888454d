"""``correspondence_node``: the process around :class:`soco_ros.lifecycle.CorrespondenceNode` (see ``docs/ros.md``).

``soco-ros-node``, ``ros2 run soco_ros correspondence_node`` and ``python -m soco_ros.node`` run :func:`main`:
build the node, autostart it, spin until Ctrl-C / SIGTERM, and leave through the lifecycle's shutdown transition.
The node itself is put together in :mod:`soco_ros.lifecycle` from its parts (parameters, inputs, outputs,
diagnostics).
"""
from __future__ import annotations

import signal
import sys
import traceback
from typing import Any


def __getattr__(name: str) -> Any:
    """``from soco_ros.node import CorrespondenceNode`` keeps working (the class lives in soco_ros.lifecycle)."""
    if name in ("CorrespondenceNode", "NODE_NAME"):
        from . import lifecycle

        return getattr(lifecycle, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _interrupt(signum, frame):  # SIGTERM like SIGINT: leave spin, shut down through the lifecycle
    raise KeyboardInterrupt


def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C / SIGTERM; 0 after a clean shutdown (whatever happened to autostart), 1 if an
    unexpected error ended it."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from .lifecycle import CorrespondenceNode

    # The worker thread holds the GIL in Python-level parts of the pipeline; a 1 ms switch interval (default 5 ms)
    # lets the executor thread take sensor messages out of DDS promptly while a frame is being processed.
    sys.setswitchinterval(0.001)
    # rclpy's own signal handler would shut the context down before the node could leave through its shutdown
    # transition (no more publishing, no transition event); Ctrl-C here raises KeyboardInterrupt in spin instead.
    rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, _interrupt)  # also when started with SIGINT ignored (a background job of a script)
    signal.signal(signal.SIGTERM, _interrupt)
    node = CorrespondenceNode()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    code = 0
    try:
        node.autostart()
        while rclpy.ok():  # short waits, so Ctrl-C is seen within a quarter second
            executor.spin_once(timeout_sec=0.25)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:  # noqa: BLE001
        node.get_logger().error("unexpected error:\n" + traceback.format_exc())
        code = 1
    finally:
        try:
            node.shutdown()
        finally:
            executor.shutdown(timeout_sec=1.0)
            node.destroy_node()
            rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
