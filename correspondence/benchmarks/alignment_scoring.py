"""How ``soco bench alignment`` scores one trial against its truth: pose errors (at the object's centre, over the
object's symmetries), BOP's MSSD / ADD-S, the live mask's IoU and each visible keypoint's pixel error with its cause.
Apart from the bench's loop (:mod:`correspondence.benchmarks.alignment`), which draws the trials and runs them."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..alignment import rotation_error_deg
from ..world.symmetry import add_s, model_points, mssd, object_symmetry
from .alignment_report import KEYPOINT_PX, SUCCESS_DEG, SUCCESS_M

BOP_FRACTION = 0.1  # MSSD / ADD-S correct within this share of the object's diameter


def rigid_part(T: np.ndarray) -> np.ndarray:
    """The rotation and translation of a similarity (its scale divided out of the upper-left block)."""
    out = np.array(T, dtype=np.float64)
    out[:3, :3] /= np.cbrt(abs(np.linalg.det(out[:3, :3])))
    return out


def object_translation_error(estimate: np.ndarray, truth: np.ndarray, centre: np.ndarray) -> float:
    """Where the estimate puts the object's centre vs where it is (metres): the translation error of the object
    pose, not of the camera-frame transform, whose translation a small rotation error inflates by the distance."""
    return float(np.linalg.norm((estimate[:3, :3] - truth[:3, :3]) @ centre + estimate[:3, 3] - truth[:3, 3]))


def _score(row: dict, result, truth: np.ndarray, centre: np.ndarray) -> dict:
    alignment = result.alignment
    row.update(reason=alignment.reason, inliers=alignment.num_inliers,
               matches=len(result.dense) if result.dense is not None else None,
               refined=bool(result.refinement is not None and result.refinement.accepted))
    if alignment.success:
        r_err = rotation_error_deg(alignment.transform, rigid_part(truth))
        t_err = object_translation_error(alignment.transform, truth, centre)
        row.update(rotation_error_deg=r_err, translation_error_cm=100 * t_err,
                   success=bool(r_err < SUCCESS_DEG and t_err < SUCCESS_M))
    else:
        row.update(success=False)
    return row


def nearest_symmetric_pose(T: np.ndarray, truth: np.ndarray, demo_pose: np.ndarray, symmetry, centre: np.ndarray
                           ) -> tuple[int, float, float]:
    """(which of the object's symmetric turns, rotation deg, translation m) of a demo -> live pose ``T`` against the
    nearest pose the symmetries make as true: a successful one first, then the smallest rotation error."""
    errors = []
    for S in symmetry.transforms:  # S maps the object onto itself: truth @ demo_pose @ S is as true
        equivalent = truth @ demo_pose @ S @ np.linalg.inv(demo_pose)
        errors.append((rotation_error_deg(T, equivalent), object_translation_error(T, equivalent, centre)))
    turn = min(range(len(errors)), key=lambda k: (errors[k][0] >= SUCCESS_DEG or errors[k][1] >= SUCCESS_M,
                                                  errors[k][0]))
    return turn, errors[turn][0], errors[turn][1]


def symmetric_errors(T: np.ndarray, truth: np.ndarray, demo_pose: np.ndarray, symmetry, centre: np.ndarray
                     ) -> tuple[float, float]:
    """(rotation deg, translation m) of ``T`` against the nearest pose the object's symmetries make as true."""
    return nearest_symmetric_pose(T, truth, demo_pose, symmetry, centre)[1:]


def _refusal_errors(search, symmetry, demo_pose: np.ndarray, truth: np.ndarray, centre: np.ndarray) -> dict:
    """An ambiguous refusal judged on the truth: the refused best's error and its rivals', and whether either was
    right (< 5 deg, < 2 cm against the nearest symmetric pose). A refusal whose best was wrong kept a wrong pose
    from the robot; one whose best was right cost a success."""
    def judged(T: np.ndarray) -> tuple[float, float, bool]:
        r_err, t_err = symmetric_errors(T, truth, demo_pose, symmetry, centre)
        return r_err, 100 * t_err, bool(r_err < SUCCESS_DEG and t_err < SUCCESS_M)

    best = judged(search.chosen.transform)
    rivals = [judged(h.transform) for h in search.rivals]
    return {"refused_best_error": [best[0], best[1]], "refused_best_right": best[2],
            "rival_errors": [[r, t] for r, t, _ in rivals], "rival_right": any(ok for _, _, ok in rivals)}


def _view_pose_errors(search, symmetry, demo_pose: np.ndarray, truth: np.ndarray, centre: np.ndarray) -> dict:
    """A multi-view demo's decision judged on the truth: each pose the view choice weighed (``view_poses``: every
    candidate view's searched pose, the pooled choice, a rival) with its fused score and error, and the fused-cloud
    contradiction values of the chosen pose (``fused_check``); a pose those refused gets its error too."""
    if search is None:
        return {}
    out = {}
    if search.view_poses:
        out["view_poses"] = [{"label": label, "score": None if score is None else round(float(score), 4),
                              "error": [round(e, 2) for e in _judged(T, symmetry, demo_pose, truth, centre)[:2]],
                              "check": check} for label, T, score, check in search.view_poses]
    if search.fused_check is not None:
        check = dict(search.fused_check)
        r_err, t_err, right = _judged(np.asarray(check.pop("transform")), symmetry, demo_pose, truth, centre)
        out["fused_check"] = {**check, "error": [round(r_err, 2), round(t_err, 2)], "right": right}
    return out


def _judged(T: np.ndarray, symmetry, demo_pose: np.ndarray, truth: np.ndarray, centre: np.ndarray
            ) -> tuple[float, float, bool]:
    """(rotation deg, translation cm, right) of ``T`` against the nearest symmetric pose."""
    r_err, t_err = symmetric_errors(T, truth, demo_pose, symmetry, centre)
    return r_err, 100 * t_err, bool(r_err < SUCCESS_DEG and t_err < SUCCESS_M)


def _score_symmetric(row: dict, result, obj, demo_pose: np.ndarray, truth: np.ndarray, centre: np.ndarray) -> dict:
    """Rotation / translation errors against the nearest symmetric pose (success judged on those) and BOP's MSSD
    and ADD-S, for a same-instance trial."""
    symmetry = object_symmetry(obj)
    row.update(symmetry=symmetry.label, diameter_m=symmetry.diameter)
    alignment = result.alignment
    search = result.pose_search
    if search is not None and search.ambiguous and search.chosen is not None:  # was the refusal needed?
        row.update(_refusal_errors(search, symmetry, demo_pose, truth, centre))
    if search is not None and search.unconfirmed and search.chosen is not None:  # the refused pose on the truth
        r_err, t_err = symmetric_errors(search.chosen.transform, truth, demo_pose, symmetry, centre)
        row.update(unconfirmed_best_error=[r_err, 100 * t_err],
                   unconfirmed_best_right=bool(r_err < SUCCESS_DEG and t_err < SUCCESS_M))
    row.update(_view_pose_errors(search, symmetry, demo_pose, truth, centre))
    if not alignment.success:
        return row
    estimate, true_pose = alignment.transform @ demo_pose, truth @ demo_pose  # object -> live camera
    turn, r_err, t_err = nearest_symmetric_pose(alignment.transform, truth, demo_pose, symmetry, centre)
    points = model_points(obj)
    mssd_m, adds_m = mssd(estimate, true_pose, points, symmetry), add_s(estimate, true_pose, points)
    row.update(rotation_error_deg=r_err, translation_error_cm=100 * t_err,
               success=bool(r_err < SUCCESS_DEG and t_err < SUCCESS_M), mssd_m=mssd_m, adds_m=adds_m,
               symmetric_turn=turn, mssd_ok=bool(mssd_m < BOP_FRACTION * symmetry.diameter),
               adds_ok=bool(adds_m < BOP_FRACTION * symmetry.diameter))
    return row


def _keypoint_errors(result, obj, live_target, demo_pose: np.ndarray) -> dict:
    """Pixel error of each reported keypoint that is visible in the live frame, against its true projection, and
    its cause when it is over :data:`KEYPOINT_PX`: ``pose`` (the true demo point moved by the estimated pose is
    that far off too), ``demo point`` (the pose is right, the keypoint's 3D point is not: its lifting from the
    demo depth) or ``match`` (the keypoint's own match was published, not a pose prediction)."""
    index = {kp.name: i for i, kp in enumerate(obj.keypoints)}
    errors, by_name = [], {}
    alignment = result.alignment
    for match in result.matches:
        i = index[match.name]
        if not live_target.keypoints_visible[i]:
            continue
        true_xy = live_target.keypoints_xy[i]
        error = float(np.linalg.norm(np.asarray(match.live_xy) - true_xy))
        errors.append(error)
        detail = {"error_px": error, "position": match.position, "accepted": bool(match.accepted)}
        if alignment is not None and alignment.success and match.position in ("pose", "pose-hidden"):
            demo_point = demo_pose[:3, :3] @ obj.keypoints[i].position + demo_pose[:3, 3]
            moved = alignment.transform[:3, :3] @ demo_point + alignment.transform[:3, 3]
            detail["pose_error_px"] = float(np.linalg.norm(live_target.intrinsics.project(moved) - true_xy))
        if error > KEYPOINT_PX:
            detail["cause"] = ("match" if "pose_error_px" not in detail else
                               "pose" if detail["pose_error_px"] > KEYPOINT_PX else "demo point")
        by_name[match.name] = detail
    return {"keypoint_errors_px": errors, "keypoints_visible_live": len(errors), "keypoint_detail": by_name,
            "keypoint_visibility": _visibility_counts(result, index, live_target)}


def _visibility_counts(result, index: dict, live_target) -> dict:
    """The pipeline's visibility verdict on each pose-predicted keypoint against the truth (in frame, not hidden
    by the object itself or another): ``"true visible / visible"`` etc., counts."""
    counts: dict[str, int] = {}
    for match, predicted in zip(result.matches, getattr(result, "pose_keypoints", None) or ()):
        if predicted.xy is None:
            continue
        truth = "visible" if live_target.keypoints_visible[index[match.name]] else "hidden"
        key = f"true {truth} / {predicted.visibility}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def symmetric_counterparts(obj, turn: np.ndarray, tolerance_m: float = 0.005) -> np.ndarray:
    """Per keypoint, the keypoint its symmetry ``turn`` (object frame) moves it onto (itself on the axis), or -1
    when none lies within ``tolerance_m`` (the symmetry is found from the mesh, so a counterpart is within about
    2 mm, not exact). A pose judged right up to that turn puts each keypoint where its counterpart is: against
    the drawn pose it would count half a turn off, though no image of the object can tell the two apart."""
    positions = obj.keypoint_positions
    moved = positions @ turn[:3, :3].T + turn[:3, 3]
    distance = np.linalg.norm(moved[:, None] - positions[None], axis=2)
    nearest = distance.argmin(1)
    return np.where(distance[np.arange(len(positions)), nearest] <= tolerance_m, nearest, -1)


def symmetric_target(target, obj, turn: np.ndarray):
    """The live target's keypoint truth under the symmetric pose: each keypoint where its counterpart is, with the
    counterpart's visibility (a keypoint without one is not scored)."""
    counterpart = symmetric_counterparts(obj, turn)
    has = counterpart >= 0
    return replace(target, keypoints_xy=np.where(has[:, None], target.keypoints_xy[counterpart], np.nan),
                   keypoints_depth=np.where(has, target.keypoints_depth[counterpart], np.nan),
                   keypoints_visible=has & target.keypoints_visible[counterpart])


def _mask_iou(result, truth: np.ndarray) -> float | None:
    if result.mask is None:
        return None
    mask = result.mask.mask.astype(bool)
    return float((mask & truth).sum()) / max(int((mask | truth).sum()), 1)
