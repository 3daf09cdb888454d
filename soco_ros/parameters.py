"""Every node parameter in one table: type, default, description, range or choices, and whether it can change
while the node is configured.

The table is plain Python (no rclpy) so it can be tested, rendered into ``config/soco.yaml`` and ``docs/ros.md``,
and checked against them. :func:`validate` is the one place a value is judged; the node calls it from its
parameter-set callback (run-time changes) and when it declares the parameters (start-up values from a params
file). Ranges are also put into the ROS ``ParameterDescriptor`` so ``ros2 param describe`` shows them.

``reconfigurable=False`` parameters shape what the node builds at *configure* time (the model, the
subscriptions, the QoS): changing one while the node is configured is refused with the reason; deactivate,
clean up, set it and configure again (or restart the node).

Types follow ROS habits: an integer given for a ``double`` parameter (``depth_max: 3`` in YAML, ``ros2 param set
... min_score 1``) is that number as a double (:func:`coerce`). ``depth_min`` / ``depth_max`` are judged as a
pair (:func:`validate_pair`): a refused pair keeps the last valid one. Adding a parameter is one ``P(...)`` line.

A renamed parameter is listed in :data:`RENAMED` (old name -> new name): the node takes the old name, from a
params file or ``ros2 param set``, as the new one and logs a warning (:func:`renamed_note`), for one release.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from correspondence.deprecation import renamed_message

RUNTIMES = ("torch", "onnxruntime", "tensorrt")
SEGMENTATION = ("auto", "none", "depth", "grabcut", "sam", "sam2")
SAM2_MODELS = ("tiny", "small", "base_plus", "large")
RELIABILITY = ("best_effort", "reliable")
SOLVERS = ("ransac", "open3d")
MATCH_METHODS = ("argmax", "soft-argmax")
SYNC_BACKENDS = ("auto", "builtin", "message_filters")
ALIGNMENT_SOURCES = ("dense", "keypoints")
REFINE = ("icp", "none")


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    low: float | None = None  # inclusive numeric range
    high: float | None = None
    choices: tuple[str, ...] | None = None
    reconfigurable: bool = True

    @property
    def type_name(self) -> str:
        return {bool: "bool", int: "int", float: "double", str: "string", list: "double[]"}[type(self.default)]

    def bracketed_range(self) -> str:
        """``[0, 1]`` for a range, ``[a / b]`` for choices, "" for neither."""
        text = self.range_text()
        return text if text.startswith("[") or not text else f"[{text}]"

    def range_text(self) -> str:
        if self.choices:
            return " / ".join(self.choices)
        if self.low is not None:
            return f"[{self.low:g}, {self.high:g}]"
        return ""


P = ParamSpec
SPECS: tuple[ParamSpec, ...] = (
    # --- what to find
    P("demo_path", "", "Demo folder or YAML (correspondence.demo_spec; `python -m soco_ros.synthetic DIR` writes "
                       "one). Needed for any output: while empty, frames are dropped and diagnostics WARN until "
                       "~/set_demo_path or this parameter is set; a path that does not load keeps the previous demo."),
    # --- model (built at configure)
    P("backbone", "auto", "Feature backbone name (`soco backbones` lists them), or 'auto' (best available: DINOv2 when its "
                          "weights resolve, else the weight-free 'daisy').", reconfigurable=False),
    P("weights", "", "Checkpoint path for the backbone; empty: resolved like the CLI (SOCO_WEIGHTS_DIR, hub cache).",
      reconfigurable=False),
    P("random_weights", False, "Random-initialised backbone (tests only).", reconfigurable=False),
    P("runtime", "torch", "Inference runtime: torch (eager), onnxruntime or tensorrt (both need runtime_model, "
                          "made by `soco export`).", choices=RUNTIMES, reconfigurable=False),
    P("runtime_model", "", "Exported model (.onnx / .engine, from soco export) for runtime onnxruntime / tensorrt.",
      reconfigurable=False),
    P("runtime_provider", "cpu", "ONNX Runtime execution provider, used exactly (a missing one is an error, never a "
                                 "silent CPU fall-back).", choices=("cpu", "cuda", "tensorrt"), reconfigurable=False),
    P("runtime_fp16", False, "TensorRT: build the engine with fp16 kernels (LayerNorm stays fp32).",
      reconfigurable=False),
    P("runtime_allow_unverified", False, "Load an exported model whose verification record is missing or failed "
                                         "(refused by default: only verified exports deploy).", reconfigurable=False),
    P("functional_head", "", "Trained functional head (.safetensors, soco train functional) for functional demos; "
                             "empty: the backbone's own features.", reconfigurable=False),
    P("device", "cpu", "Torch device for the backbone (cpu, cuda, cuda:1...); one this machine lacks fails "
                       "configure with the devices it has.", reconfigurable=False),
    P("dtype", "auto", "Backbone precision for the torch runtime (auto: bf16 on a CPU with native bf16 once verified on "
                       "these weights, else float32; float16 needs CUDA; autocast, LayerNorm fp32).",
      choices=("auto", "float32", "float16", "bfloat16"), reconfigurable=False),
    P("cuda_graphs", False, "Torch runtime on CUDA: capture the backbone as a CUDA graph at configure and replay it "
                            "per frame, preprocessing on the GPU (the fastest batch-1 path).", reconfigurable=False),
    P("image_size", 0, "Backbone input side in px; 0 = the backbone's default (448 for DINOv2 / daisy).",
      0, 4096, reconfigurable=False),
    P("match_method", "argmax", "Keypoint match method.", choices=MATCH_METHODS, reconfigurable=False),
    P("match_protocol", "default", "default: precise transfer (relative soft-argmax temperature, refinement); soco: "
                                   "the SOCO reference's matching (cell positions, no refinement).",
      choices=("default", "soco"), reconfigurable=False),
    P("refine_keypoints", True, "Refine each coarse keypoint match at the original resolution (docs/precise_transfer.md).",
      reconfigurable=False),
    P("refine_candidates", 1, "Coarse cells per keypoint re-ranked at full resolution (1 = the best cell only; 8 "
                              "recovers wrong cells under strong viewpoint changes, slower).", 1, 64,
      reconfigurable=False),
    P("geometry", "none", "Verify the matches against one robust 2D model of the dense matches (same rigid object "
                          "only; none for cross-instance transfer).",
      choices=("none", "affine", "homography", "fundamental", "auto"), reconfigurable=False),
    # --- gravity (reconfigurable: read per frame)
    P("up", [0.0, 0.0, 0.0], "The vertical (opposite to gravity) in the live camera frame, 3 numbers (normalised by the "
                             "node; e.g. [0, -1, 0] for a level camera, from TF on a robot): the pose search then also "
                             "tries every upright turn of the object about it and probes ambiguity about it alone. "
                             "[0, 0, 0] = no gravity prior; a zero-length or non-finite vector is refused."),
    P("demo_up", [0.0, 0.0, 0.0], "The vertical in the demo camera frame, 3 numbers (normalised); [0, 0, 0] = the same "
                                  "as up (a demo captured by the same fixed camera). Used only while up is set."),
    P("torch_threads", 0, "torch.set_num_threads for the worker; 0 = torch's default.", 0, 256,
      reconfigurable=False),
    # --- match rejection (reconfigurable)
    P("min_score", -1.0, "Reject matches whose cosine score is below this (the pipeline's min_score); -1 accepts "
                         "all. Was match_threshold.", -1.0, 1.0),
    P("require_mutual", False, "Reject matches that are not mutual nearest neighbours."),
    P("max_cycle_px", 0.0, "Reject matches whose forward-backward cycle distance (demo px) exceeds this; 0 = off.",
      0.0, 10000.0),
    # --- segmentation
    P("segmentation", "auto", "Live object mask source when no mask topic is used: auto (SAM 2.1 if its weights "
                              "resolve, else SAM, else depth foreground with depth, else GrabCut), none, depth, "
                              "grabcut, sam, sam2. It is prompted where the demo object's features are found.",
      choices=SEGMENTATION),
    P("sam2_model", "tiny", "SAM 2.1 size for segmentation sam2 (and the first choice of auto).",
      choices=SAM2_MODELS),
    P("sam2_image_size", 1024, "SAM 2.1's encoder input side in px, a multiple of 32; 1024 is the trained size. "
                               "Smaller is faster on small frames (e.g. 512 for 448 px frames); mask quality with "
                               "real weights untested (docs/live_object.md).", 64, 4096),
    P("track_every", 0, "Carry the live mask between frames by the backbone's features and run the mask source "
                        "again at least every N frames (or when the object moved); 0 = segment every frame "
                        "(docs/live_object.md).", 0, 100000),
    P("view_schedule_every", 10, "Multi-view demo on a stream: the last pose's demo view localises first and the "
                                 "others only when it is not clearly confirmed, and all views at least every N "
                                 "frames; 0 = every view on every frame (docs/multiview_demo.md).", 0, 100000),
    P("view_schedule_keep", 0.8, "Multi-view demo: the share of its last winning localisation score the last "
                                 "pose's view must keep to localise alone (view_schedule_every > 0).", 0.0, 1.0),
    P("support_plane", True, "Take the table the object stands on out of the live depth before segmenting and "
                             "localising (RANSAC plane, level with up when up is set; docs/live_object.md). Off for "
                             "an object held in the air or on a wall."),
    P("support_plane_min_area", 0.25, "The least share of the frame a plane must cover to be taken for the table.",
      0.01, 1.0),
    P("mask_completion", True, "Complete the depth mask with the touching depth surfaces that keep it within the "
                               "demo object's height, footprint and colours (a chair's back in front of its seat, "
                               "legs a stereo camera cut off; needs up; docs/live_object.md)."),
    P("mask_completion_grow", 1.15, "How much larger than the demo object's height and footprint a completed mask "
                                    "may measure (mask_completion).", 1.0, 3.0),
    # --- depth and alignment
    P("depth_scale", 0.001, "Metres per unit of 16UC1 depth (0.001 = millimetres). 32FC1 depth is metres and "
                            "is not scaled.", 1e-6, 1.0),
    P("depth_min", 0.05, "Nearest depth used for lifting and segmentation (m).", 0.0, 100.0),
    P("depth_max", 5.0, "Farthest depth used for lifting and segmentation (m).", 0.001, 100.0),
    P("solver", "ransac", "Rigid alignment solver.", choices=SOLVERS),
    P("ransac_threshold", 0.015, "RANSAC inlier distance (m); the 2D fallback uses pixel_threshold.", 1e-5, 1.0),
    P("ransac_iterations", 1000, "RANSAC hypotheses (upper bound).", 1, 100000),
    P("min_inliers", 4, "Fewest inliers for an alignment to count as a success.", 3, 10000),
    P("alignment_source", "dense", "Correspondences behind the 3D alignment: dense (dense demo-object matches) or "
                                   "keypoints (the transferred keypoints; keypoint demos only).",
      choices=ALIGNMENT_SOURCES),
    P("refine", "icp", "Refine the alignment with guarded ICP (icp: kept only when it converged, moved the pose at "
                       "most 30 deg / 10 cm and the surfaces agree no worse; see README) or not (none).",
      choices=REFINE),
    P("dense_top_k", 300, "Dense matches kept per frame, best discovery score first (functional matches and the "
                          "alignment's correspondences); 0 = all.", 0, 100000),
    P("pixel_threshold", 8.0, "2D similarity inlier threshold (px), used without depth.", 0.1, 1000.0),
    # --- inputs
    P("use_depth", True, "Subscribe to 'depth' and pair it with 'image' (3D matches and alignment).",
      reconfigurable=False),
    P("image_transport", "raw", "How 'image' arrives: raw (sensor_msgs/Image) or compressed (sensor_msgs/"
                                "CompressedImage, JPEG or PNG, on '<image>/compressed' as image_transport publishes "
                                "it).", choices=("raw", "compressed"), reconfigurable=False),
    P("depth_transport", "raw", "How 'depth' arrives: raw (sensor_msgs/Image) or compressedDepth (PNG on "
                                "'<depth>/compressedDepth', 16UC1 or quantised 32FC1; RVL is refused).",
      choices=("raw", "compressedDepth"), reconfigurable=False),
    P("depth_registered", False, "Accept depth and camera_info whose frame_id differs from the image's (registered to "
                                 "the colour image under another frame name). false: such a frame is rejected with "
                                 "the fix, since depth from another viewpoint gives wrong 3D points."),
    P("use_mask", False, "Subscribe to 'mask' (mono8) and pair it with 'image'; it replaces segmentation.",
      reconfigurable=False),
    P("use_prompt", False, "Subscribe to 'prompt' (PointStamped, pixel x/y in the image) for segmentation.",
      reconfigurable=False),
    P("sync_slop", 0.05, "Approximate-time tolerance between image, depth and mask stamps (s).", 0.0, 10.0),
    P("sync_queue_size", 10, "Messages kept per input while waiting for a partner.", 1, 1000, reconfigurable=False),
    P("sync_backend", "auto", "auto / builtin: the built-in synchroniser (every drop logged and counted by cause); "
                              "message_filters: its ApproximateTimeSynchronizer when importable (its drops are not "
                              "reported).", choices=SYNC_BACKENDS, reconfigurable=False),
    P("max_future_stamp", 0.5, "Refuse image / depth / mask messages stamped more than this (s) ahead of the node's "
                               "clock (the /clock time with use_sim_time): one such stamp would make every later "
                               "frame look out of order. 0 = accept any.", 0.0, 86400.0),
    P("stamp_jump_threshold", 1.0, "A stamp this far (s) behind the newest of its input is a jump back (a looped "
                                   "bag, a clock reset): the synchroniser is re-armed with a warning; a smaller step "
                                   "back is out of order and dropped.", 0.001, 86400.0),
    P("max_frame_age", 1.0, "A synchronised frame older than this (s, stamp vs wall clock) when the worker gets to "
                            "it is dropped as stale; 0 = never.", 0.0, 3600.0),
    P("qos_reliability", "best_effort", "Reliability of the sensor subscriptions (image, depth, mask, "
                                        "camera_info).", choices=RELIABILITY, reconfigurable=False),
    P("qos_depth", 5, "History depth of the sensor subscriptions.", 1, 1000, reconfigurable=False),
    # --- outputs
    P("capture_dir", "", "Folder ~/capture_demo writes the latest synchronised frame into, as a new demo folder "
                         "demo_<UTC time> (rgb, depth, intrinsics; annotate it with `soco demo edit`)."),
    P("demo_frame_id", "demo_object", "child_frame_id of ~/alignment and of the /tf transform (the demo object / "
                                      "demo camera frame)."),
    P("publish_tf", True, "Broadcast each successful alignment on /tf (camera frame -> demo_frame_id), with "
                          "tf2_ros when importable, else as tf2_msgs/TFMessage (python -m soco_ros.tf2_msgs_build)."),
    P("publish_debug", False, "Publish ~/debug_image (overlay) and ~/mask (on their own low-priority thread; "
                              "they never delay ~/matches)."),
    P("marker_scale", 0.01, "Sphere diameter of ~/markers (m).", 1e-4, 10.0),
    P("marker_lifetime", 0.0, "Lifetime of ~/markers (s), so stale markers vanish when output stops; 0 = two "
                              "frame periods (measured; 1 s until known).", 0.0, 3600.0),
    # --- health (diagnostics)
    P("diagnostics_period", 1.0, "Seconds between diagnostics messages (published in every lifecycle state).",
      0.05, 3600.0, reconfigurable=False),
    P("health_timeout", 5.0, "Diagnostics WARN when no image arrived for this long, or frames arrive but nothing "
                             "was published for this long (s).",
      0.1, 3600.0),
    P("health_window", 10.0, "Window (s) over which the share of rejected / failed / stale frames is judged.",
      0.5, 3600.0),
    P("health_max_problem_ratio", 0.5, "Diagnostics WARN when more than this share of the window's frames were "
                                       "rejected, failed or went stale.", 0.0, 1.0),
    P("autostart", True, "Configure and activate on start-up (false: wait for lifecycle transitions).",
      reconfigurable=False),
)
BY_NAME = {spec.name: spec for spec in SPECS}
# Old name -> new name: accepted with a warning for one release (the pipeline calls it min_score too).
RENAMED: dict[str, str] = {"match_threshold": "min_score"}


def renamed_note(old: str) -> str:
    """The warning for a parameter given under its old name (the wording of correspondence.deprecation)."""
    return renamed_message(old, RENAMED[old], "parameter") + f"; its value is used as {RENAMED[old]!r}"


def renamed_message_ignored(old: str) -> str:
    """The warning when a parameter is given under both its old and its new name: the new one wins."""
    return renamed_message(old, RENAMED[old], "parameter") + f"; both were given, {old!r} is ignored"


def undeclared_reason(name: str, declared: list[str] | tuple[str, ...] = ()) -> str:
    """Why a parameter the node does not have is refused: its name, the closest declared names (a typo is the usual
    cause) and where the list is."""
    import difflib

    close = difflib.get_close_matches(name, list(declared) or list(BY_NAME), n=2, cutoff=0.6)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    return (f"undeclared parameter {name!r}: the node has no such parameter{hint}; `ros2 param list` shows its "
            "parameters, docs/ros.md explains them")


VECTOR_LENGTH = 3  # the double[] parameters (up, demo_up) are 3-vectors
MIN_DIRECTION_NORM = 1e-6  # a direction shorter than this (and not exactly zero, "unset") is a mistake


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def coerce(name: str, value: Any) -> Any:
    """``value`` as ROS users mean it: an integer for a ``double`` parameter is that number as a float, and a
    sequence of numbers for a ``double[]`` parameter (``-p up:=[0,-1,0]`` arrives as integers, a params file's as
    ``array.array``) is a list of floats. Anything else is returned unchanged (and judged by :func:`validate`)."""
    spec = BY_NAME.get(name)
    if spec is not None and type(spec.default) is float and _is_number(value) and isinstance(value, int):
        return float(value)
    if (spec is not None and type(spec.default) is list and not isinstance(value, (str, bytes))
            and hasattr(value, "__iter__")):
        items = list(value)
        if all(_is_number(v) for v in items) and not (type(value) is list and all(type(v) is float for v in items)):
            return [float(v) for v in items]
    return value


def direction(value: Any) -> tuple[float, float, float] | None:
    """A validated ``up`` / ``demo_up`` value as a unit vector, None for [0, 0, 0] (unset)."""
    v = [float(x) for x in value]
    norm = math.sqrt(sum(x * x for x in v))
    return None if norm == 0.0 else (v[0] / norm, v[1] / norm, v[2] / norm)


def validate_pair(values: dict[str, Any]) -> str | None:
    """The depth range is one setting in two parameters: None if ``depth_min < depth_max``, else the reason
    naming both values."""
    if "depth_min" in values and "depth_max" in values and not values["depth_min"] < values["depth_max"]:
        return f"depth_min ({values['depth_min']:g}) must be smaller than depth_max ({values['depth_max']:g})"
    return None


def validate(name: str, value: Any, others: dict[str, Any] | None = None) -> str | None:
    """None if ``value`` is acceptable for ``name``, else the reason (one sentence naming the parameter)."""
    spec = BY_NAME.get(name)
    if spec is None:
        return f"unknown parameter {name!r}"
    expected = type(spec.default)
    value = coerce(name, value)
    if type(value) is not expected:
        return f"parameter {name!r} must be a {spec.type_name}, got {type(value).__name__} {value!r}"
    if spec.low is not None:
        if isinstance(value, float) and not math.isfinite(value):
            return f"parameter {name!r} must be finite, got {value!r}"
        if not (spec.low <= value <= spec.high):
            return f"parameter {name!r}={value!r} is out of range [{spec.low:g}, {spec.high:g}]"
    if spec.choices and value not in spec.choices:
        return f"parameter {name!r}={value!r} is not one of {', '.join(spec.choices)}"
    if expected is list:
        return _validate_direction(name, value)
    if name in ("depth_min", "depth_max"):
        return validate_pair({**(others or {}), name: value})
    return None


def _validate_direction(name: str, value: list) -> str | None:
    """A direction parameter: 3 finite numbers, all zero (unset) or of a length the node can normalise."""
    if len(value) != VECTOR_LENGTH or not all(isinstance(v, float) for v in value):
        return (f"parameter {name!r} must be {VECTOR_LENGTH} numbers (x, y, z in the camera frame), got "
                f"{len(value)}: {value!r}")
    if not all(math.isfinite(v) for v in value):
        return f"parameter {name!r} must be finite, got {value!r}"
    norm = math.sqrt(sum(v * v for v in value))
    if 0.0 < norm < MIN_DIRECTION_NORM:
        return (f"parameter {name!r}={value!r} has length {norm:.3g}: too short to be a direction (give the vertical "
                "as a non-zero vector, or [0, 0, 0] for none)")
    return None


def defaults() -> dict[str, Any]:
    return {spec.name: list(spec.default) if isinstance(spec.default, list) else spec.default for spec in SPECS}


def yaml_text() -> str:
    """``config/soco.yaml``: every parameter with its default and description (``/**``: any node name, so a
    remapped or namespaced node reads it too)."""
    lines = ["# soco_ros correspondence_node parameters, every one with its default (generated by",
             "# `python -m soco_ros.parameters > config/soco.yaml`; docs/ros.md explains them).",
             "# Values marked (configure-time) apply at configure; the others can change at run time. Integers are",
             "# fine for double parameters (3 = 3.0). rclpy's standard QoS overrides of the sensor subscriptions",
             "# (fully resolved topic names) go next to them, e.g.:",
             "#     qos_overrides:",
             "#       /camera/color/image_raw:",
             "#         subscription:",
             "#           reliability: reliable",
             *(f"# Renamed (the old name still works, with a warning): {old} -> {new}." for old, new in RENAMED.items()),
             "/**:", "  ros__parameters:"]
    for spec in SPECS:
        value = spec.default
        text = ("true" if value else "false") if isinstance(value, bool) else (
            f'"{value}"' if isinstance(value, str) else repr(value))
        extra = f" {spec.bracketed_range()}" if spec.range_text() else ""
        extra += "" if spec.reconfigurable else " (configure-time)"
        lines.append(f"    # {spec.description}{extra}")
        lines.append(f"    {spec.name}: {text}")
    return "\n".join(lines) + "\n"


def markdown_table() -> str:
    rows = ["| parameter | type | default | range / choices | run-time | description |", "|---|---|---|---|---|---|"]
    for spec in SPECS:
        default = f"`{spec.default!r}`" if not isinstance(spec.default, str) else f'`"{spec.default}"`'
        rows.append(f"| `{spec.name}` | {spec.type_name} | {default} | {spec.range_text()} | "
                    f"{'yes' if spec.reconfigurable else 'configure'} | {spec.description} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(markdown_table() if "--markdown" in sys.argv else yaml_text())
