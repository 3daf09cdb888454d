"""A multi-view demo's chosen pose judged against the live frame by the one-view contradiction rules, on the fused
cloud (:mod:`correspondence.pose_confirmation`, docs/pose_search.md "Poses that contradict the frame").

Why: the four-view decision (:func:`~correspondence.view_choice.choose_searched`) ranks poses by score and
refuses when two turns score alike, but a pose that wins with a fair score can still contradict what the live
camera saw: a jug laid 160 deg off, a kettle 89 deg off (docs/multiview_demo.md "Poses that contradict the
frame, four views"). The one-view rules judge the chosen hypothesis's own score on the one view's cloud; here every
view's points are moved by the pose and only the side the live camera would see under it is judged
(:func:`~correspondence.cloud_visibility.visible_mask`), each point in its own view's colour:

* **free space**: share of the visible moved points where the live camera saw through them (exact depth only,
  :func:`~correspondence.pose_confirmation.rough_share`);
* **colour mismatch**: share laid on the live surface in another colour;
* **surface agreement**: share on the live surface at all;
* **handle match**: a round body's appendage, the live one moved back by the pose onto the fused cloud's
  (:func:`~correspondence.pose_confirmation.handle_match`; the fused cloud shows the handle from every side).

The thresholds are :class:`FusedConfirmationSettings`'s, measured on the four-view rows (not the one-view ones:
the fused cloud's visible side is larger and seen from several cameras). Measured, only the handle match separates
right from wrong poses there (right 0.74-1.0, wrong 0-0.40); free space and colour are off by default (right poses
reach 0.084 and 0.44) and stay measured in the result. The same check tells the view choice's rivals apart
(:func:`~correspondence.view_pool.refuse_rival`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .cloud_visibility import visible_mask
from .pose_confirmation import ConfirmationSettings, contradiction_reason, handle_match, handle_reason, rough_share
from .pose_search import LiveFrame, PoseSearchSettings, score_pose


@dataclass(frozen=True)
class FusedConfirmationSettings:
    """``PipelineSettings.fused_confirmation``: the four rules' limits on the fused cloud (None: that rule off);
    ``enabled`` False turns them all off (the values are still measured and reported)."""

    enabled: bool = True
    judge_rivals: bool = True  # the view choice's rival rule skips a rival pose these rules refuse (view_pool.py)
    max_free_space: float | None = None  # off: on the fused cloud's facing views right poses reach 0.084 (a truck on
    # seed 1, 0.66 deg off) and wrong turns 0.004-0.114 (jugs and a mug): no threshold separates them, and every
    # wrong pose it would refuse the handle rule refuses too (docs/multiview_demo.md)
    max_rough_share: float = 0.3  # as the one-view rule: free space is judged only on depth exact to ~0.5 mm
    max_color_mismatch: float | None = None  # off: on the fused cloud right poses reach 0.27 (a chair on seed 2;
    # a car 0.10), even from the views facing the live camera, and no wrong pose on seed 2 needed it
    min_surface_agreement: float | None = 0.02
    min_handle_match: float | None = 0.3
    min_handle_points: int = 10
    max_view_deg: float = 50.0  # free space and colour are judged on the points of the views whose camera saw the
    # object from within this of the live camera's direction under the pose (the nearest view of four is within 45
    # deg): the same surface seen from another side differs in shading and its silhouette rims lie off the live
    # surface, so a right jug's pose 1.5 deg off had 25-52 % of two turned views' visible points in "another colour"
    # and 8 % of a third's in free space, against 4 % and 2 % for the view facing the camera

    def as_confirmation(self) -> ConfirmationSettings:
        """The same limits in the one-view rules' settings (their reasons' words are shared)."""
        return ConfirmationSettings(max_free_space=self.max_free_space, max_rough_share=self.max_rough_share,
                                    max_color_mismatch=self.max_color_mismatch,
                                    min_surface_agreement=self.min_surface_agreement,
                                    min_handle_match=self.min_handle_match, min_handle_points=self.min_handle_points)


@dataclass(frozen=True)
class FusedCheck:
    """The rules' values for one pose (None: not judged) and the refusal's reason (None: no contradiction)."""

    free_space: float
    color_mismatch: float | None
    agreement: float
    handle_match: float | None
    exact_depth: bool
    visible_points: int
    reason: str | None

    def as_dict(self) -> dict:
        return {"free_space": self.free_space, "color_mismatch": self.color_mismatch, "agreement": self.agreement,
                "handle_match": self.handle_match, "exact_depth": self.exact_depth,
                "visible_points": self.visible_points, "refused": self.reason is not None}


def facing_views(T: np.ndarray, points: np.ndarray, centres: np.ndarray, max_deg: float) -> np.ndarray:
    """Which views (camera centres in the primary frame) saw the object from within ``max_deg`` of the direction
    the live camera sees it from under the primary -> live pose ``T`` (rays from the cloud's centre); the nearest
    view always counts."""
    centre = points.mean(0)
    live_centre = np.linalg.inv(T)[:3, 3]  # the live camera in the primary frame

    def unit(v):
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    angles = np.degrees(np.arccos(np.clip(unit(centres - centre) @ unit(live_centre - centre), -1.0, 1.0)))
    return (angles <= max_deg) | (angles == angles.min())


def fused_check(T: np.ndarray, points: np.ndarray, colours: np.ndarray | None, live: LiveFrame,
                search: PoseSearchSettings, up_demo: np.ndarray | None, settings: FusedConfirmationSettings,
                sources: tuple[np.ndarray, np.ndarray] | None = None) -> FusedCheck:
    """The four rules on the fused cloud ``points`` (primary frame, row-aligned ``colours``) moved by the primary ->
    live pose ``T``: agreement of the part the live camera would see; free space and colour mismatch of that part
    from the views facing the live camera (``sources``: each row's view and each view's camera centre,
    :meth:`~correspondence.multiview_pose.MultiViewDemo.fused_sources`; None: every row); the handle match of the
    whole cloud (``up_demo``: the vertical in the primary frame; None: no handle rule)."""
    seen = visible_mask(points, T, live.intrinsics)
    score = score_pose(T, points[seen], None, live, search, None if colours is None else colours[seen])
    if sources is not None:
        facing = facing_views(T, points, sources[1], settings.max_view_deg)[sources[0]] & seen
        if facing.sum() >= 10:
            near = score_pose(T, points[facing], None, live, search, None if colours is None else colours[facing])
            score = replace(score, free_space=near.free_space, color_mismatch=near.color_mismatch)
    rough = rough_share(live) if settings.max_free_space is not None else None
    exact = rough is None or rough <= settings.max_rough_share
    reason = (contradiction_reason(score, settings.as_confirmation(), exact) if settings.enabled else None)
    handle = None
    if up_demo is not None and settings.min_handle_match is not None:
        handle = handle_match(T, points, live, np.asarray(up_demo, dtype=np.float64), search.surface_m,
                              settings.min_handle_points)
        if reason is None and settings.enabled and handle is not None and handle < settings.min_handle_match:
            reason = handle_reason(handle, settings.min_handle_match)
    if reason is not None:
        reason = reason.replace("unconfirmed:", "unconfirmed (fused views):", 1)
    return FusedCheck(float(score.free_space), score.color_mismatch, float(score.agreement), handle, exact,
                      int(seen.sum()), reason)


def confirm_fused(searched: tuple, check) -> tuple:
    """``searched`` ((alignment, pose search result), the view choice's) with the chosen pose's
    :class:`FusedCheck` (``check(T)``, :func:`fused_check` bound to the frame) in the result (``fused_check``), and no
    pose (``unconfirmed``, the reason says which rule) when it contradicts the live frame. A refusal or a failed
    alignment passes unchanged."""
    alignment, result = searched
    if alignment is None or not alignment.success or alignment.transform is None:
        return searched
    verdict = check(alignment.transform)
    if result is not None:
        result = replace(result, fused_check={**verdict.as_dict(),
                                              "transform": np.asarray(alignment.transform).tolist()})
    if verdict.reason is None:
        return alignment, result
    alignment = replace(alignment, success=False, transform=None, reason=verdict.reason)
    if result is not None:
        result = replace(result, transform=None, unconfirmed=True, reason=verdict.reason)
    return alignment, result
