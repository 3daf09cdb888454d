"""A processed frame -> the node's output messages (no node, no DDS: testable on its own).

Frames: every per-frame message carries the live image's header (its stamp and ``frame_id``, the live camera
frame). ``~/alignment`` maps the demo object frame (``demo_frame_id``: the demo camera frame, in which the demo
keypoints were lifted) into the live camera frame: ``header.frame_id`` = live camera, ``child_frame_id`` = demo
object, as tf expects for "pose of the child in the parent".
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from correspondence.frame_report import alignment_record

from .conversions import matches_to_cloud, position_code, rgb_to_image, transform_to_msg
from .processor import Processed

MARKER_NAMESPACE_POINTS = "soco_matches"
MARKER_NAMESPACE_LABELS = "soco_labels"


@dataclass
class Outputs:
    matches: Any
    alignment: Any | None
    quality: Any | None
    markers: Any
    debug_image: Any | None = None
    mask: Any | None = None


def quality_dict(processed: Processed) -> dict | None:
    """``~/alignment_quality``: the frame's :func:`alignment_record` plus how many matches it used, the pose
    search's verdict (:func:`pose_search_dict`: ambiguity, hypotheses, the vertical it used) and, for a keypoint
    demo, every keypoint's status (:func:`keypoint_records`)."""
    result = processed.result
    record = alignment_record(result)
    if record is None:
        return None
    used = len(result.dense) if result.mode == "functional" else int(np.count_nonzero(result.accepted))
    out = {**record, "accepted_matches": used, "mode": result.mode, "pose_search": pose_search_dict(processed),
           "pose_ambiguous": bool(result.pose_search is not None and result.pose_search.ambiguous)}
    if result.mode == "keypoints":
        keypoints = keypoint_records(processed)
        out["keypoints"] = keypoints
        out["pose_disagreements"] = sum(k["pose_disagrees"] for k in keypoints)
    return out


def pose_search_dict(processed: Processed) -> dict:
    """The pose search behind a 3D pose: whether it ran, ``ambiguous`` (the turn cannot be fixed: no pose),
    ``reason``, the ``chosen`` hypothesis' source, how many hypotheses were scored per source, and ``up``: the
    verticals it was given (``demo`` / ``live`` camera, unit vectors; None: no gravity prior); ``unconfirmed``
    (a one-view demo's pose refused as a guess by shape alone), its ``appearance_agreement`` and the
    ``view_change_deg`` the pose claims (:mod:`correspondence.pose_confirmation`)."""
    search = processed.result.pose_search
    up = None if processed.up is None else {"demo": [round(float(v), 6) for v in processed.up[0]],
                                            "live": [round(float(v), 6) for v in processed.up[1]]}
    if search is None:
        return {"ran": False, "ambiguous": False, "reason": None, "chosen": None, "hypotheses": {}, "up": up,
                "unconfirmed": False, "appearance_agreement": None, "view_change_deg": None}
    sources: dict[str, int] = {}
    for h in search.hypotheses:
        sources[h.source] = sources.get(h.source, 0) + 1
    return {"ran": True, "ambiguous": bool(search.ambiguous), "reason": search.reason,
            "chosen": None if search.chosen is None else search.chosen.source, "hypotheses": sources, "up": up,
            "unconfirmed": bool(search.unconfirmed), "appearance_agreement": search.appearance_agreement,
            "view_change_deg": search.view_change_deg}


def keypoint_records(processed: Processed) -> list[dict]:
    """Per demo keypoint (``index`` into ``~/keypoint_names``): ``accepted``, ``position`` (where its live pixel
    comes from: cell / soft-argmax / refined / model / epipolar, or pose / pose-hidden once an accepted 3D pose
    re-predicted it), ``live_xy``, ``pose_disagrees`` (its own match lies more than the pipeline's ``max_px`` from the
    pose's prediction: the match is the suspect), ``pose_error_px`` and ``visibility`` (None without a pose)."""
    result = processed.result
    poses = result.pose_keypoints or (None,) * len(result.matches)
    records = []
    for i, (match, accepted, pose) in enumerate(zip(result.matches, result.accepted, poses)):
        error = None if pose is None or pose.match_error_px is None else round(float(pose.match_error_px), 3)
        records.append({"index": i, "name": match.name, "accepted": bool(accepted), "position": match.position,
                        "live_xy": [round(float(v), 3) for v in match.live_xy],
                        "pose_disagrees": bool(pose is not None and pose.disagrees), "pose_error_px": error,
                        "visibility": None if pose is None else pose.visibility})
    return records


def build_outputs(processed: Processed, header, demo_frame_id: str, marker_scale: float = 0.01,
                  publish_debug: bool = False, marker_lifetime_s: float = 0.0,
                  processing_s: float | None = None) -> Outputs:
    """Every output of one frame. The node builds the debug images separately (:func:`build_debug_outputs`, on
    its low-priority debug thread) and passes ``publish_debug=False`` here."""
    from std_msgs.msg import String

    result = processed.result
    live_points, live_xy, demo_xy, scores, index, labels, positions, disagrees = match_arrays(processed)
    cloud = matches_to_cloud(header, live_points, live_xy, demo_xy, scores, index, positions, disagrees)
    alignment = None
    if result.alignment is not None and result.alignment.success and result.alignment.transform is not None:
        alignment = transform_to_msg(result.alignment.transform, header, demo_frame_id)
    quality = quality_dict(processed)
    quality_msg = None
    if quality is not None:
        quality["stamp"] = {"sec": int(header.stamp.sec), "nanosec": int(header.stamp.nanosec)}
        if processing_s is not None:
            quality["processing_ms"] = round(1e3 * float(processing_s), 2)
        quality_msg = String(data=json.dumps(quality, sort_keys=True))
    markers = build_markers(header, labels, live_points, marker_scale, marker_lifetime_s)
    outputs = Outputs(cloud, alignment, quality_msg, markers)
    if publish_debug:
        outputs.debug_image, outputs.mask = build_debug_outputs(processed, header)
    return outputs


def build_debug_outputs(processed: Processed, header) -> tuple[Any, Any | None]:
    """``~/debug_image`` (the demo / live overlay, rgb8) and ``~/mask`` (mono8, None without a mask)."""
    result = processed.result
    mask = rgb_to_image(result.mask.mask, header) if result.mask is not None else None
    return rgb_to_image(debug_overlay(processed), header), mask


def tf_message(transforms: list):
    """``tf2_msgs/TFMessage`` holding ``transforms`` (TransformStamped), or None when tf2_msgs is not importable."""
    try:
        from tf2_msgs.msg import TFMessage
    except ImportError:
        return None
    return TFMessage(transforms=list(transforms))


def match_arrays(processed: Processed) -> tuple[np.ndarray, ...]:
    """The points ``~/matches`` carries: live xyz, live xy, demo xy, score, index, label, position code and the
    pose-disagreement flag.

    Keypoint demo: the accepted keypoint matches, ``index`` into the demo's keypoint list. Functional demo: the
    dense matches of the functional part, best discovery score first, ``index`` = that rank and ``score`` the
    discovery score in [0, 1]."""
    result = processed.result
    if result.mode == "functional":
        dense = result.dense
        n = len(dense)
        points = (np.asarray(result.dense_live_points, dtype=np.float64).reshape(-1, 3)
                  if result.dense_live_points is not None else np.full((n, 3), np.nan))
        return (points, dense.live_xy.reshape(-1, 2), dense.demo_xy.reshape(-1, 2), dense.score,
                np.arange(n, dtype=np.uint32), [f"{processed.demo.function} #{i}" for i in range(n)],
                np.full(n, position_code("dense"), dtype=np.uint8), np.zeros(n, dtype=bool))
    accepted = np.flatnonzero(np.asarray(result.accepted, dtype=bool))
    live_xy = np.array([m.live_xy for m in result.matches], dtype=np.float64).reshape(-1, 2)
    demo_xy = np.array([m.demo_xy for m in result.matches], dtype=np.float64).reshape(-1, 2)
    scores = np.array([m.score for m in result.matches], dtype=np.float64)
    live_points = np.asarray(result.live_points, dtype=np.float64).reshape(-1, 3)
    positions = np.array([position_code(m.position) for m in result.matches], dtype=np.uint8)
    disagrees = np.array([bool(p.disagrees) for p in result.pose_keypoints] if result.pose_keypoints is not None
                         else [False] * len(result.matches), dtype=bool)
    return (live_points[accepted], live_xy[accepted], demo_xy[accepted], scores[accepted],
            accepted.astype(np.uint32), [result.matches[i].name for i in accepted], positions[accepted],
            disagrees[accepted])


def build_markers(header, names: list[str], points: np.ndarray, scale: float, lifetime_s: float = 0.0):
    """A DELETEALL, then a sphere and a text label per match with a 3D point (matches without depth have none).
    ``lifetime_s`` > 0: RViz removes the markers after that long, so they vanish when output stops."""
    from builtin_interfaces.msg import Duration
    from visualization_msgs.msg import Marker, MarkerArray

    sec, nanosec = divmod(int(round(max(0.0, float(lifetime_s)) * 1e9)), 1_000_000_000)
    lifetime = Duration(sec=sec, nanosec=nanosec)
    array = MarkerArray()
    clear = Marker(header=header, action=Marker.DELETEALL)
    array.markers.append(clear)
    for i, (name, p) in enumerate(zip(names, np.asarray(points).reshape(-1, 3))):
        if not np.isfinite(p).all():
            continue
        r, g, b = _colour(i)
        sphere = Marker(header=header, ns=MARKER_NAMESPACE_POINTS, id=i, type=Marker.SPHERE, action=Marker.ADD,
                        lifetime=lifetime)
        sphere.pose.position.x, sphere.pose.position.y, sphere.pose.position.z = (float(v) for v in p)
        sphere.pose.orientation.w = 1.0
        sphere.scale.x = sphere.scale.y = sphere.scale.z = float(scale)
        sphere.color.r, sphere.color.g, sphere.color.b, sphere.color.a = r, g, b, 1.0
        text = Marker(header=header, ns=MARKER_NAMESPACE_LABELS, id=i, type=Marker.TEXT_VIEW_FACING,
                      action=Marker.ADD, text=name, lifetime=lifetime)
        text.pose.position.x, text.pose.position.y = float(p[0]), float(p[1]) - 1.5 * float(scale)
        text.pose.position.z = float(p[2])
        text.pose.orientation.w = 1.0
        text.scale.z = 1.5 * float(scale)
        text.color.r = text.color.g = text.color.b = text.color.a = 1.0
        array.markers.extend([sphere, text])
    return array


def _colour(i: int) -> tuple[float, float, float]:
    from correspondence.viz import PALETTE

    r, g, b = PALETTE[i % len(PALETTE)]
    return r / 255.0, g / 255.0, b / 255.0


def debug_overlay(processed: Processed) -> np.ndarray:
    from correspondence.frame_report import frame_overlay

    status = quality_dict(processed) or {}
    title = f"{'aligned' if status.get('success') else status.get('reason', 'matches')}"
    image = frame_overlay(processed.demo, processed.frame.rgb, processed.result, title=title,
                          height=processed.frame.rgb.shape[0])
    return np.asarray(image.convert("RGB"))
