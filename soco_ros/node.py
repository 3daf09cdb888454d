"""``correspondence_node``: the process around :class:`soco_ros.lifecycle.CorrespondenceNode` (see ``docs/ros.md``).

``soco-ros-node``, ``ros2 run soco_ros correspondence_node`` and ``python -m soco_ros.node`` run :func:`main`:
build the node, autostart it, spin until Ctrl-C / SIGTERM, and leave through the lifecycle's shutdown transition.
The node itself is put together in :mod:`soco_ros.lifecycle` from its parts (parameters, inputs, outputs,
diagnostics).

Signals are honoured from the first line of :func:`main` to the exit. This module imports nothing heavy at the top
(rclpy, torch and the library come inside :func:`main`, after the handlers), so a Ctrl-C during the seconds of
imports, model building or the demo warm-up is not lost and prints no traceback:

* before the spin loop (imports, ``rclpy.init``, the node's construction, autostart's configure / activate) the
  first SIGINT / SIGTERM unwinds start-up at once (:class:`Interrupted`), and whatever exists is shut down;
* while spinning it ends the loop within ``SPIN_PERIOD_S`` (plus the callback in progress);
* during shutdown further signals are noted and ignored, so the shutdown transition completes.

Exit codes: 0 after a requested stop (SIGINT or SIGTERM, at any moment) and after a clean shutdown, whatever
happened to autostart; 1 after an unexpected error. A requested stop is a clean exit, not a failure: launch files,
lifecycle managers and systemd see 0, and the log says which signal stopped the node (the shell's 128 + signal
convention, 130, is not used). The only moment not covered is the interpreter's own start-up, before this
module's first line runs (there Python's default handler applies).
"""
from __future__ import annotations

import signal
import sys
from typing import Any

SPIN_PERIOD_S = 0.25  # the spin loop checks for a stop request at least this often
EXIT_OK, EXIT_ERROR = 0, 1


def __getattr__(name: str) -> Any:
    """``from soco_ros.node import CorrespondenceNode`` keeps working (the class lives in soco_ros.lifecycle)."""
    if name in ("CorrespondenceNode", "NODE_NAME"):
        from . import lifecycle

        return getattr(lifecycle, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Interrupted(BaseException):
    """A stop signal during start-up. A BaseException, so no ``except Exception`` on the way swallows it."""


class StopRequest:
    """What the signal handler knows: the phase of the process and the first signal received."""

    def __init__(self) -> None:
        self.phase = "starting"  # starting -> spinning -> stopping
        self.signum: int | None = None
        self.phase_at_signal = ""

    def handle(self, signum: int, frame) -> None:
        if self.signum is None:
            self.signum, self.phase_at_signal = signum, self.phase
        if self.phase == "starting":
            self.phase = "stopping"  # raise once: a second signal during the unwinding is only noted
            raise Interrupted(signum)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


def install_handlers(stop: StopRequest) -> None:
    """SIGINT and SIGTERM go to ``stop`` (also when the process was started with SIGINT ignored, as a background
    job of a script is)."""
    signal.signal(signal.SIGINT, stop.handle)
    signal.signal(signal.SIGTERM, stop.handle)


def main(args: list[str] | None = None) -> int:
    """Run the node until SIGINT / SIGTERM; the exit code (module docstring)."""
    stop = StopRequest()
    install_handlers(stop)  # first: nothing before it can take long
    node = executor = rclpy = None
    code = EXIT_OK
    try:
        import rclpy
        from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        from .lifecycle import CorrespondenceNode

        # The worker thread holds the GIL in Python-level parts of the pipeline; a 1 ms switch interval (default
        # 5 ms) lets the executor thread take sensor messages out of DDS promptly while a frame is being processed.
        sys.setswitchinterval(0.001)
        # rclpy's own handler would shut the context down before the node could leave through its shutdown
        # transition (no more publishing, no transition event): ours only records the request.
        rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
        node = CorrespondenceNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        node.autostart()
        if stop.phase == "starting":
            stop.phase = "spinning"
        while stop.signum is None and rclpy.ok():
            executor.spin_once(timeout_sec=SPIN_PERIOD_S)
    except Interrupted:
        pass
    except Exception as exc:  # noqa: BLE001 - ExternalShutdownException (context shut down elsewhere) is not an error
        if type(exc).__name__ != "ExternalShutdownException":
            _report_error(node)
            code = EXIT_ERROR
    finally:
        stop.phase = "stopping"
        _stop(node, executor, rclpy, stop)
    return code


def _report_error(node) -> None:
    import traceback

    text = "unexpected error:\n" + traceback.format_exc()
    if node is not None:
        node.get_logger().error(text)
    else:
        sys.stderr.write(f"[soco_ros] {text}")


def _stop(node, executor, rclpy, stop: StopRequest) -> None:
    """Shut whatever exists down: the node through its lifecycle, then the executor and the context."""
    if stop.signum is not None:
        when = " during start-up" if stop.phase_at_signal == "starting" else ""
        text = f"{stop.name} received{when}: shutting down"
        if node is not None:
            node.get_logger().info(text)
        else:
            sys.stderr.write(f"[soco_ros] {text}\n")
    try:
        if node is not None:
            node.shutdown()
            node.publish_final_diagnostics()  # subscribers see "finalized", not the last state before it
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=1.0)
        if node is not None:
            node.destroy_node()
        if rclpy is not None:
            rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
