"""The node's parameters as ROS users expect them: declared from the table in :mod:`soco_ros.parameters`, every
refused value logged (with the parameter's name and the reason) and counted in ``parameters_rejected``.

:class:`ParametersMixin` is one part of :class:`soco_ros.lifecycle.CorrespondenceNode`. It owns ``self.params``
(the current values) and reads / writes on the node: ``counts`` (``parameters_rejected``), ``processor``,
``sync``, ``worker``, ``health`` and ``_configured``; :meth:`_apply_runtime_changes` pushes an accepted change
to whichever part uses it. Declaring is table-driven: a new parameter is one line in ``parameters.SPECS``.
"""
from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.parameter import Parameter

from correspondence.errors import SocoError

from . import parameters as P


def _descriptor(spec: P.ParamSpec) -> ParameterDescriptor:
    extra = f" {spec.bracketed_range()}" if spec.range_text() else ""
    extra += "" if spec.reconfigurable else " (configure-time only)"
    descriptor = ParameterDescriptor(description=spec.description + extra)
    if spec.low is not None and isinstance(spec.default, float):
        descriptor.floating_point_range = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high),
                                                              step=0.0)]
    elif spec.low is not None and isinstance(spec.default, int):
        descriptor.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=0)]
    if spec.choices:
        descriptor.additional_constraints = "one of: " + ", ".join(spec.choices)
    return descriptor


def _typed(name: str, value: Any) -> Parameter:
    """A coerced value as the parameter rclpy expects: a double, or a double array for a ``double[]``."""
    kind = Parameter.Type.DOUBLE_ARRAY if isinstance(value, list) else Parameter.Type.DOUBLE
    return Parameter(name, kind, value)


class ParametersMixin:
    def _declare_parameters(self) -> dict[str, Any]:
        """Declare every parameter with its start-up value. An integer for a double is taken as that double; a
        value of the wrong type, out of range or not among the choices falls back to the default; an invalid
        depth pair falls back to the default pair. Each fallback is a warning naming the values and is counted."""
        overrides = getattr(self, "_parameter_overrides", None)  # rclpy's start-up values (params file, -p)
        if isinstance(overrides, dict):
            self._rename_overrides(overrides)
        values: dict[str, Any] = {}
        for spec in P.SPECS:  # table-driven: a new parameter is one line in parameters.SPECS
            descriptor = _descriptor(spec)
            if isinstance(overrides, dict) and spec.name in overrides:
                given = overrides[spec.name].value
                coerced = P.coerce(spec.name, given)
                if coerced is not given:
                    overrides[spec.name] = _typed(spec.name, coerced)
            try:
                value = self.declare_parameter(spec.name, spec.default, descriptor).value
            except (InvalidParameterValueException, InvalidParameterTypeException) as exc:
                self._parameter_refused(spec.name, f"start-up value rejected ({exc}); using the default "
                                                   f"{spec.default!r}", prefix="[parameter] ")
                value = self.declare_parameter(spec.name, spec.default, descriptor, ignore_override=True).value
            reason = P.validate(spec.name, value)
            if reason is not None:
                self._parameter_refused(spec.name, f"{reason}; using the default {spec.default!r}",
                                        prefix="[parameter] ")
                self.set_parameters([Parameter(spec.name, value=spec.default)])
                value = spec.default
            values[spec.name] = P.coerce(spec.name, value)  # a double[] as a list, whatever rclpy holds it in
        if isinstance(overrides, dict):
            self._refuse_undeclared_overrides(overrides)
        reason = P.validate_pair(values)
        if reason is not None:
            low, high = P.BY_NAME["depth_min"].default, P.BY_NAME["depth_max"].default
            self._parameter_refused("depth_min", f"start-up {reason}; keeping the last valid pair depth_min={low:g}, "
                                                 f"depth_max={high:g} (the defaults)", prefix="[parameter] ")
            self.set_parameters([Parameter("depth_min", value=low), Parameter("depth_max", value=high)])
            values.update(depth_min=low, depth_max=high)
        return values

    def _refuse_undeclared_overrides(self, overrides: dict[str, Parameter]) -> None:
        """Start-up values (-p, a params file) for parameters the node does not have: named, logged and counted
        (rclpy would keep them silently). ``qos_overrides.*`` are declared later, with the subscriptions."""
        for name in list(overrides):
            if not self.has_parameter(name) and not name.startswith("qos_overrides."):
                self._parameter_refused(name, f"{P.undeclared_reason(name, self._declared_names())}; its start-up "
                                              "value is ignored", prefix="[parameter] ")

    def _declared_names(self) -> list[str]:
        return [name for name in self._parameters if not name.startswith("qos_overrides.")]

    def set_parameters(self, parameter_list: list[Parameter]) -> list[SetParametersResult]:
        """One :meth:`set_parameters_atomically` per parameter (what rclpy does), so the undeclared check applies."""
        return [self.set_parameters_atomically([param]) for param in parameter_list]

    def set_parameters_atomically(self, parameter_list: list[Parameter]) -> SetParametersResult:
        """An undeclared name is refused with a reason naming it (and the closest declared names), logged and
        counted; rclpy's own refusal names nothing (``Invalid access to undeclared parameter(s): []``). The
        ``SetParameters`` service of ``ros2 param set`` comes through here too."""
        unknown = [p.name for p in parameter_list if p.name not in P.RENAMED and not self.has_parameter(p.name)]
        if unknown and not self._allow_undeclared_parameters:
            reasons = [P.undeclared_reason(name, self._declared_names()) for name in unknown]
            for name, reason in zip(unknown, reasons):
                self._parameter_refused(name, reason)
            return SetParametersResult(successful=False, reason="; ".join(reasons))
        return super().set_parameters_atomically(parameter_list)

    def _rename_overrides(self, overrides: dict[str, Parameter]) -> None:
        """Start-up values given under a renamed parameter's old name are taken as the new one (a warning each);
        when both names are given, the new one wins and the old value is reported as ignored."""
        for old, new in P.RENAMED.items():
            if old not in overrides:
                continue
            given = overrides.pop(old)
            if new in overrides:
                self.get_logger().warning(f"[parameter] {P.renamed_message_ignored(old)}")
                continue
            overrides[new] = Parameter(new, given.type_, given.value)
            self.get_logger().warning(f"[parameter] {P.renamed_note(old)}")

    def _parameter_refused(self, name: str, reason: str, prefix: str | None = None) -> None:
        """Every refused parameter value: one warning (unthrottled: a user action) and a counter."""
        with self._state_lock:
            self.counts["parameters_rejected"] += 1
        head = prefix if prefix is not None else f"[parameter:{name}] rejected: "
        if prefix is not None and not reason.startswith(name):
            reason = f"{name}: {reason}"
        self.get_logger().warning(f"{head}{reason}")

    def _pre_set_parameters(self, params: list[Parameter]) -> list[Parameter]:
        """Before rclpy checks types and ranges: an integer for a double becomes that double (what ``ros2 param
        set node min_score 1`` sends), a renamed parameter's old name becomes the new one (with a warning), and a
        value rclpy or we will refuse is logged and counted here, once, with our reason (rclpy's own refusals
        never reach :meth:`_on_set_parameters`)."""
        out = []
        for param in params:
            if param.name in P.RENAMED:
                self.get_logger().warning(f"[parameter:{param.name}] {P.renamed_note(param.name)}")
                param = Parameter(P.RENAMED[param.name], param.type_, param.value)
            spec = P.BY_NAME.get(param.name)
            if spec is None:
                out.append(param)
                continue
            value = P.coerce(param.name, param.value)
            if value is not param.value:
                param = _typed(param.name, value)
            reason = P.validate(param.name, value)
            if reason is not None:
                self._parameter_refused(param.name, reason)
            out.append(param)
        return out

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        changes: dict[str, Any] = {}
        for param in params:
            spec = P.BY_NAME.get(param.name)
            if spec is None:  # e.g. use_sim_time, qos_overrides.*
                continue
            value = P.coerce(param.name, param.value)
            reason = P.validate(param.name, value)
            if reason is not None:  # already logged and counted by the pre-set callback
                return SetParametersResult(successful=False, reason=reason)
            if not spec.reconfigurable and self._configured and value != self.params[param.name]:
                return self._refuse(param.name, f"parameter {param.name!r} is applied at configure time; deactivate "
                                                "and clean up the node, set it, then configure again (or restart "
                                                "the node)")
            changes[param.name] = value
        merged = {**self.params, **changes}
        reason = P.validate_pair(merged)
        if reason is not None:
            name = "depth_min" if "depth_min" in changes else "depth_max"
            return self._refuse(name, f"{reason}; keeping depth_min={self.params['depth_min']:g}, "
                                      f"depth_max={self.params['depth_max']:g} (to move the range past its other "
                                      "end, set both at once with set_parameters_atomically, or move the other "
                                      "end first)")
        if "demo_path" in changes and self.processor is not None and changes["demo_path"] != self.params["demo_path"]:
            error = self._request_demo(changes["demo_path"])
            if error is not None:
                return self._refuse("demo_path", error, log=False)  # _request_demo logged it
        if self.processor is not None:
            processor_changes = {k: v for k, v in changes.items() if k != "demo_path"}
            if processor_changes:
                try:
                    self.processor.update(processor_changes)
                except SocoError as exc:
                    return self._refuse(",".join(sorted(processor_changes)), f"cannot apply it: {exc}")
        self.params.update(changes)
        if "sync_slop" in changes and self.sync is not None:
            self._set_slop(changes["sync_slop"])
        if "stamp_jump_threshold" in changes and hasattr(self.sync, "jump_s"):
            self.sync.jump_s = changes["stamp_jump_threshold"]
        if "max_frame_age" in changes and self.worker is not None:
            self.worker.max_age_s = float(changes["max_frame_age"])
        self._apply_health_params(changes)
        return SetParametersResult(successful=True)

    def _refuse(self, name: str, reason: str, log: bool = True) -> SetParametersResult:
        if log:
            self._parameter_refused(name, reason)
        else:
            with self._state_lock:
                self.counts["parameters_rejected"] += 1
        return SetParametersResult(successful=False, reason=reason)

    def _apply_health_params(self, changes: dict[str, Any]) -> None:
        if "health_timeout" in changes:
            self.health.timeout_s = float(changes["health_timeout"])
        if "health_window" in changes:
            self.health.window_s = float(changes["health_window"])
        if "health_max_problem_ratio" in changes:
            self.health.max_problem_ratio = float(changes["health_max_problem_ratio"])
