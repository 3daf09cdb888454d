"""Pose at any yaw: global 3D hypotheses on the segmented clouds beside the appearance-match pose, each scored by
how well it explains the live depth and image, the best refined with the guarded ICP (:mod:`correspondence.icp`).

Why: the appearance matches give a pose only where the two views show the same side of the object; turned by
90-180 deg they show other sides, the matches land on look-alike parts (a car's left side on its right side) and
RANSAC returns a wrong pose or none. The depth clouds still overlap (the top, an end), so geometry proposes
poses the matches cannot: Open3D's FPFH features with RANSAC (``registration_ransac_based_on_feature_matching``)
and fast global registration (``registration_fgr_based_on_feature_matching``, Zhou et al. 2016), on voxel-
downsampled clouds; the best proposal turned by multiples of ``turn_step_deg`` about the principal axes of the
moved cloud (the flips that features of a box-like or round object confuse, and the rivals a symmetric object
has); and, with the vertical known, an upright pose every ``sweep_step_deg`` of yaw, its translation fitted with
the turn held (:mod:`correspondence.yaw_sweep`).

Every hypothesis ``T`` (demo camera -> live camera) moves the demo object's cloud into the live camera, where the
live frame says how right it is (:func:`score_pose`):

* **agreement**: the share of moved demo points that land on the live object's surface (projected into the live
  depth, within ``surface_m``), and the share of the live object's points with a moved demo point that near;
* **free space**: a moved point the camera would see in front of the surface it did see, or outside the live
  object's silhouette where nothing is, is a contradiction (a partial view can miss a surface, never see through
  one); their share is subtracted, weighed ``contradiction_weight`` times an agreeing point;
* **colour**: a moved point on the live surface whose colour (chromaticity, which shading leaves alone) differs
  from the live pixel's is a contradiction too, and does not count as agreeing: a car's seen side laid on its
  other side fits the depth, but puts the cab's colour on the load bed's;
* **appearance**: where moved points agree with the surface, how much more similar the demo and live descriptors
  of the pairs the pose makes are than those of the same pixels paired at random (a contrast, because
  histogram-like descriptors such as DAISY are all alike in absolute cosine); the texture tells a turn of a
  round object apart when the shape cannot.

The best hypotheses (``refine_top``) go through the guarded ICP and are scored again; a refinement that lowers the
score is undone (two partial views pull ICP onto the largest overlap, not onto the truth). When another hypothesis
turned by at least ``ambiguity_deg`` from the best scores within ``ambiguity_margin`` of it, the data cannot fix
the turn (a symmetric object whose texture does not help): the result is **ambiguous** and carries no pose, the
candidates listed, rather than a random yaw.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .alignment import rotation_error_deg
from .camera import CameraIntrinsics
from .icp import IcpSettings, IcpTarget, refine
from .yaw_sweep import _axis_angle, yaw_sweep

from .pose_search_types import Hypothesis, PoseScore, PoseSearchResult, PoseSearchSettings

SOURCE_MATCHES, SOURCE_FPFH, SOURCE_FGR = "matches", "fpfh-ransac", "fgr"
SOURCE_TURN, SOURCE_UPRIGHT, SOURCE_PROBE = "turn", "upright", "probe"
__all__ = ["Hypothesis", "LiveFrame", "PoseScore", "PoseSearchResult", "PoseSearchSettings", "score_pose",
           "search_pose"]


@dataclass(frozen=True, eq=False)
class LiveFrame:
    """What the scores look at: the live depth (metres), its camera, the live object's mask and, optionally, a
    descriptor sampler ``(N, 2) pixels -> (N, C)``."""

    depth: np.ndarray
    intrinsics: CameraIntrinsics
    mask: np.ndarray
    cloud: np.ndarray  # (M, 3) live object points
    descriptors: object = None
    image: np.ndarray | None = None  # (H, W, 3) uint8 live RGB: colour consistency when the demo's colours are given
    unknown: np.ndarray | None = None  # (H, W) bool: pixels without depth that a surface may fill (a stereo camera's
    # holes, :mod:`correspondence.depth_holes`): no free-space evidence. None: found in ``depth`` itself (pass them
    # when ``depth`` has had a support plane removed, whose pixels were seen)
    _near: dict = field(default_factory=dict, repr=False, compare=False)  # window px -> nearest depth

    def __post_init__(self) -> None:
        if self.unknown is None:
            from .depth_holes import depth_holes

            object.__setattr__(self, "unknown", depth_holes(self.depth))

    def nearest_surface(self, window_px: int) -> np.ndarray:
        """The nearest valid depth within ``window_px`` of each pixel (inf: none), once per frame and window: the
        free-space test's tolerance of pixel rounding at depth edges."""
        if window_px not in self._near:
            import cv2

            depth = np.asarray(self.depth, dtype=np.float32)
            with np.errstate(invalid="ignore"):
                depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(np.inf))
            if window_px > 0:
                depth = cv2.erode(depth, np.ones((2 * window_px + 1, 2 * window_px + 1), np.uint8),
                                  borderType=cv2.BORDER_REPLICATE)
            self._near[window_px] = depth
        return self._near[window_px]


def _apply(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ T[:3, :3].T + T[:3, 3]


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def chromaticity(rgb: np.ndarray, dark: float) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) uint8 or 0-1 colours -> (their chromaticity r, g, b over the sum, whether bright enough to trust it).
    Chromaticity ignores how strongly a surface is lit (shading scales all three), so the same part seen under
    another light keeps it; a side of the object painted otherwise does not."""
    rgb = np.asarray(rgb, dtype=np.float64)
    rgb = rgb / 255.0 if rgb.size and rgb.max() > 1.0 else rgb
    total = rgb.sum(1, keepdims=True)
    return rgb / np.maximum(total, 1e-6), total[:, 0] / 3 >= dark


@dataclass(frozen=True)
class Evidence:
    """What one pose says point by point: which moved demo points lie on the live surface in their colour, which
    live points have one of them near, and the shares of contradictions."""

    agree: np.ndarray  # (N,) bool, demo points
    covered: np.ndarray  # (M,) bool, live points
    free_space: float
    color_mismatch: float | None
    xy: np.ndarray  # (N, 2) where the moved demo points project


def evidence(T: np.ndarray, demo_points: np.ndarray, live: LiveFrame, settings: PoseSearchSettings,
             demo_colors: np.ndarray | None = None) -> Evidence:
    from scipy.spatial import cKDTree

    moved = _apply(T, demo_points)
    h, w = live.depth.shape
    z = moved[:, 2]
    front = z > 1e-3
    xy = np.full((len(moved), 2), -1.0)
    xy[front] = live.intrinsics.project(moved[front])
    col, row = np.floor(xy[:, 0]).astype(np.int64), np.floor(xy[:, 1]).astype(np.int64)
    inside = front & (col >= 0) & (col < w) & (row >= 0) & (row < h)
    r, c = row[inside], col[inside]
    seen = live.depth[r, c]
    on_object = live.mask[r, c]
    has_depth = np.isfinite(seen) & (seen > 0)
    agree = np.zeros(len(moved), dtype=bool)
    agree[inside] = on_object & has_depth & (np.abs(z[inside] - seen) < settings.surface_m)
    unknown = live.unknown[r, c]  # a camera's hole: no reading is no evidence that nothing is there
    nearest = live.nearest_surface(settings.free_space_window_px)
    near_depth = nearest[r, c]
    contradiction = ((np.isfinite(near_depth) & (z[inside] < near_depth - settings.free_space_m))  # in front of
                     # every surface near
                     | (~on_object & ~has_depth & ~unknown))
    free_space = float(contradiction.mean()) if inside.any() else 1.0
    color_mismatch, wrong_color = None, np.zeros(len(moved), dtype=bool)
    if demo_colors is not None and live.image is not None:
        near = agree.copy()
        near[inside] &= np.abs(z[inside] - seen) < settings.color_surface_m
        a, a_ok = chromaticity(demo_colors[near], settings.color_dark)
        difference = np.full(int(near.sum()), np.inf)  # the nearest colour within color_window_px: a pose a pixel
        # or two off puts a textured surface's stripes side by side, which is no contradiction
        k = settings.color_window_px
        for dr in (-k, 0, k):
            for dc in (-k, 0, k):
                b, b_ok = chromaticity(live.image[np.clip(row[near] + dr, 0, h - 1), np.clip(col[near] + dc, 0, w - 1)],
                                       settings.color_dark)
                difference = np.minimum(difference, np.where(b_ok, np.linalg.norm(a - b, axis=1), 0.0))
        wrong_color[near] = a_ok & (difference > settings.color_tolerance)
        color_mismatch = float(wrong_color.sum() / max(int(inside.sum()), 1))
        agree &= ~wrong_color
    supported = moved[~wrong_color]
    distance = (cKDTree(supported).query(live.cloud, distance_upper_bound=settings.surface_m)[0] if len(supported)
                else np.full(len(live.cloud), np.inf))
    return Evidence(agree, np.isfinite(distance), free_space, color_mismatch, xy)


def score_pose(T: np.ndarray, demo_points: np.ndarray, demo_descriptors, live: LiveFrame,
               settings: PoseSearchSettings, demo_colors: np.ndarray | None = None,
               inferred: np.ndarray | None = None, turn_weights=None) -> PoseScore:
    """How well ``T`` explains the live frame (see the module doc); ``demo_descriptors`` and ``demo_colors``
    ((N, 3) RGB) are row-aligned with ``demo_points`` (or None). ``inferred``: rows that were not seen but
    inferred (a mirror-completed demo cloud, :mod:`correspondence.mirror_symmetry`): the cloud then has both
    sides, so ``agreement`` is the share of the points the live camera would see (not hidden behind the object's
    near side), and their descriptors (NaN) take no part in the appearance. ``turn_weights`` (a
    :class:`~correspondence.revolution.Revolution` in the demo frame, or None): agreement and coverage weigh each demo
    point, and each live point moved back into the demo frame, by how much it fixes a round object's turn."""
    e = evidence(T, demo_points, live, settings, demo_colors)
    agree = e.agree
    agreement = float(agree.mean()) if len(agree) else 0.0
    if turn_weights is not None and len(agree):
        w = turn_weights.weights(demo_points)
        agreement = float((w * agree).sum() / w.sum())
    if inferred is not None and len(agree):
        from .cloud_visibility import visible_mask  # the coarse z-buffer the fused multi-view cloud uses

        agreement = float(agree.sum() / max(int(visible_mask(demo_points, T, live.intrinsics).sum()), 1))
    coverage = float(e.covered.mean()) if len(e.covered) else 0.0
    if turn_weights is not None and len(e.covered):
        w = turn_weights.weights(_apply(np.linalg.inv(T), live.cloud))
        coverage = float((w * e.covered).sum() / w.sum())
    appearance = None
    described = agree if inferred is None else agree & ~inferred
    if demo_descriptors is not None and live.descriptors is not None and described.sum() >= 5:
        a, b = _unit_rows(demo_descriptors[described]), _unit_rows(live.descriptors(e.xy[described]))
        shuffled = np.roll(np.arange(len(b)), len(b) // 2)  # the same live pixels, paired with other demo points
        appearance = float(np.mean((a * b).sum(1)) - np.mean((a * b[shuffled]).sum(1)))
    contradictions = e.free_space + (e.color_mismatch or 0.0)
    support = 0.5 * (agreement + coverage) - contradictions
    if appearance is not None:
        support += settings.appearance_weight * appearance * agreement
    score = support - (settings.contradiction_weight - 1) * contradictions
    return PoseScore(agreement, coverage, e.free_space, appearance, float(score), e.color_mismatch, float(support))


def _voxel(points: np.ndarray, settings: PoseSearchSettings) -> float:
    diagonal = float(np.linalg.norm(points.max(0) - points.min(0))) if len(points) else 0.0
    return float(np.clip(diagonal * settings.voxel_fraction, 0.003, 0.03))


def global_hypotheses(demo_points: np.ndarray, live_points: np.ndarray, settings: PoseSearchSettings
                      ) -> list[tuple[str, np.ndarray]]:
    """(source, demo -> live transform) proposals from FPFH features: RANSAC runs and FGR (Open3D)."""
    import open3d as o3d

    reg = o3d.pipelines.registration
    voxel = _voxel(demo_points, settings)

    def prepared(points: np.ndarray):
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.ascontiguousarray(points, dtype=np.float64)))
        cloud = cloud.voxel_down_sample(voxel)
        cloud.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=2.5 * voxel, max_nn=30))
        cloud.orient_normals_towards_camera_location(np.zeros(3))  # both clouds are seen from their camera
        feature = reg.compute_fpfh_feature(cloud, o3d.geometry.KDTreeSearchParamHybrid(radius=5 * voxel, max_nn=100))
        return cloud, feature

    (src, src_f), (dst, dst_f) = prepared(demo_points), prepared(live_points)
    if len(src.points) < 10 or len(dst.points) < 10:
        return []
    out = []
    distance = 1.5 * voxel
    for seed in range(settings.ransac_runs):
        o3d.utility.random.seed(seed)
        result = reg.registration_ransac_based_on_feature_matching(
            src, dst, src_f, dst_f, True, distance, reg.TransformationEstimationPointToPoint(False), 3,
            [reg.CorrespondenceCheckerBasedOnEdgeLength(0.9), reg.CorrespondenceCheckerBasedOnDistance(distance)],
            reg.RANSACConvergenceCriteria(settings.ransac_iterations, 0.999))
        if len(result.correspondence_set) >= 3:
            out.append((SOURCE_FPFH, np.asarray(result.transformation).copy()))
    if settings.fgr:
        result = reg.registration_fgr_based_on_feature_matching(
            src, dst, src_f, dst_f, reg.FastGlobalRegistrationOption(maximum_correspondence_distance=distance))
        if len(result.correspondence_set) >= 3:
            out.append((SOURCE_FGR, np.asarray(result.transformation).copy()))
    return [(s, T) for s, T in out if np.isfinite(T).all()]


def _about(R: np.ndarray, centre: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = centre - R @ centre
    return T


def turned(T: np.ndarray, demo_points: np.ndarray, step_deg: float, up: np.ndarray | None = None
           ) -> list[np.ndarray]:
    """``T`` followed by turns of every multiple of ``step_deg`` about the vertical ``up`` (live camera frame), or
    without one about each principal axis of the moved cloud, through the moved cloud's centroid."""
    moved = _apply(T, demo_points)
    centre = moved.mean(0)
    axes = [up] if up is not None else np.linalg.svd(moved - centre, full_matrices=False)[2]
    return [_about(_axis_angle(axis, angle), centre) @ T for axis in axes
            for angle in np.radians(np.arange(step_deg, 360.0 - 1e-6, step_deg))]


def _snapper(demo_points: np.ndarray, live_points: np.ndarray, settings: PoseSearchSettings, fit_points=None):
    """A quick coarse ICP (point to point, voxel clouds) that pulls a hypothesis onto the nearest fit before it is
    scored: a turn proposed about the wrong centre is still the right turn."""
    import open3d as o3d

    reg = o3d.pipelines.registration
    voxel = _voxel(demo_points, settings)
    clouds = [o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.ascontiguousarray(p, dtype=np.float64)))
              .voxel_down_sample(voxel) for p in (demo_points, live_points)]
    criteria = reg.ICPConvergenceCriteria(max_iteration=8)
    estimation = reg.TransformationEstimationPointToPoint(False)

    def snap(T: np.ndarray) -> np.ndarray:
        source = clouds[0] if fit_points is None else o3d.geometry.PointCloud(o3d.utility.Vector3dVector(
            np.ascontiguousarray(fit_points(T), dtype=np.float64))).voxel_down_sample(voxel)
        for distance in (6 * voxel, 2 * voxel):
            T = np.asarray(reg.registration_icp(source, clouds[1], distance, T, estimation, criteria).transformation)
        return T.copy()
    return snap


def _close(a: np.ndarray, b: np.ndarray, centre: np.ndarray, deg: float = 5.0, metres: float = 0.01) -> bool:
    """Within ``deg`` and ``metres`` (at the demo cloud's centre) of each other."""
    return (rotation_error_deg(a, b) <= deg
            and np.linalg.norm(_apply(a, centre[None]) - _apply(b, centre[None])) <= metres)


def _distinct(candidates: list[Hypothesis], k: int, centre: np.ndarray) -> list[Hypothesis]:
    """The best ``k`` hypotheses that differ from each other (5 deg or 1 cm at the demo cloud's centre)."""
    kept: list[Hypothesis] = []
    for h in candidates:
        if not any(_close(h.transform, o.transform, centre) for o in kept):
            kept.append(h)
        if len(kept) == k:
            break
    return kept


def _also_explains(rival: PoseScore, best: PoseScore, s: PoseSearchSettings) -> bool:
    """A partial view lets a wrong turn explain *more* of the live surface than the truth (a car's seen left side
    laid on its right side): a rival that contradicts the frame no more than the best does and still lies on a fair
    share of it is another explanation, unless the appearance clearly prefers the best."""
    consistent = rival.free_space <= max(best.free_space + 0.02, s.consistent_free_space)
    appearance_decides = (rival.appearance is not None and best.appearance is not None
                          and best.appearance - rival.appearance >= s.appearance_decides)
    return consistent and rival.agreement >= s.consistent_agreement and not appearance_decides


def _rival(rival: PoseScore, best: PoseScore, s: PoseSearchSettings) -> bool:
    """Whether a pose turned away from the best explains the frame about as well: scores within the margin, or
    support within ``explains_margin`` and :func:`_also_explains` (a small contradiction that the weighted score
    magnifies does not make a rival that explains the frame implausible)."""
    return (rival.score >= best.score - s.ambiguity_margin
            or (rival.support >= best.support - s.explains_margin and _also_explains(rival, best, s)))


def _confident(score: PoseScore, s: PoseSearchSettings) -> bool:
    """The early stop: a matches' pose that already explains the live surface needs no global search."""
    return (s.early_stop_score is not None and score.support >= s.early_stop_score
            and score.free_space + (score.color_mismatch or 0.0) <= s.early_stop_free_space)


def search_pose(demo_points: np.ndarray, demo_descriptors, live: LiveFrame, matches_pose: np.ndarray | None,
                settings: PoseSearchSettings | None = None, icp: IcpSettings | None = None,
                refine_with_icp: bool = True, up: tuple[np.ndarray, np.ndarray] | None = None,
                demo_colors: np.ndarray | None = None, demo_view: LiveFrame | None = None,
                fit_points=None, inferred: np.ndarray | None = None) -> PoseSearchResult:
    """Propose (the matches' pose and, with ``global_hypotheses``, FPFH + RANSAC and FGR poses, turns of the best,
    and with ``up`` = (the vertical in the demo camera, in the live camera) upright poses every
    ``turn_step_deg``), score, refine the best with the guarded ICP, score again, choose, and call the turn
    ambiguous when it is (module doc). ``demo_view``: the demo's own depth, mask and image (as a
    :class:`LiveFrame` whose cloud is ``demo_points``): a rival that puts the object's surface where the best does
    (:func:`~correspondence.pose_equivalence.equivalent_poses`) is then no ambiguity. ``fit_points``:
    ``T -> (K, 3)`` the demo points a hypothesis is fitted with (snap, ICP); default all of them (a multi-view
    demo's fused cloud gives the side the live camera sees). ``inferred``: (N,) bool, the rows of ``demo_points``
    inferred rather than seen (a mirror completion, :mod:`correspondence.mirror_symmetry`): scored as both sides
    of the object, fitted with the side the live camera would see, and left out of the demo-view checks."""
    s = settings or PoseSearchSettings()
    icp = icp or IcpSettings()
    if len(demo_points) < 10 or len(live.cloud) < 10:
        return PoseSearchResult(None, None, (), False, "too few depth points on the demo or live object")
    score = lambda T: score_pose(T, demo_points, demo_descriptors, live, s, demo_colors, inferred)  # noqa: E731
    if inferred is not None and fit_points is None:
        from .cloud_visibility import visible_points

        fit_points = lambda T: visible_points(demo_points, T, live.intrinsics)  # noqa: E731
    snap = _snapper(demo_points, live.cloud, s, fit_points) if s.snap else (lambda T: T)
    fit = fit_points or (lambda T: demo_points)
    scored = []
    if matches_pose is not None:
        snapped = snap(np.asarray(matches_pose, dtype=np.float64))
        scored.append(Hypothesis(SOURCE_MATCHES, snapped, score(snapped)))
    search_globally = s.global_hypotheses and not (scored and _confident(scored[0].score, s))
    proposals, fitted = [], []
    if search_globally:
        proposals += global_hypotheses(demo_points, live.cloud, s)
        if up is not None and s.sweep_step_deg > 0:  # already fitted with the turn held: not snapped (a free ICP
            # would slide them back onto the largest overlap)
            fitted = [Hypothesis(SOURCE_UPRIGHT, T, score(T)) for T in yaw_sweep(
                demo_points, live.cloud, live.depth, live.intrinsics, up, s.sweep_step_deg, live.mask, live.unknown)]
    if not proposals and not scored and not fitted:
        return PoseSearchResult(None, None, (), False, "no pose hypothesis (no matches pose, no global registration)")
    scored = sorted(scored + fitted + [Hypothesis(src, snap(T), score(snap(T))) for src, T in proposals],
                    key=lambda h: -h.score.score)
    if s.turn_step_deg > 0 and search_globally:  # the best proposal turned: the flips the features confuse and
        # the rivals an ambiguous (symmetric) object has
        turns = turned(scored[0].transform, demo_points, s.turn_step_deg, None if up is None else up[1])
        scored = sorted(scored + [Hypothesis(SOURCE_TURN, snap(T), score(snap(T))) for T in turns],
                        key=lambda h: -h.score.score)
    centre = demo_points.mean(0)
    finals, verified = [], []  # verified: the guarded ICP accepted the surfaces' fit (whether or not it is kept)
    chosen_for_icp = _distinct(scored, max(s.refine_top, 1), centre)
    chosen_for_icp += [h for h in scored if h.source == SOURCE_MATCHES and h not in chosen_for_icp][:1]  # always
    target = IcpTarget(live.cloud)  # the live cloud's normals once for every ICP
    viewpoint = np.zeros(3) if fit_points is None else None  # a view's own cloud: the ICP fits the part facing the
    # live camera; a cut one (fused views, mirror completion) is already what the camera sees
    for h in chosen_for_icp:
        if refine_with_icp:
            refinement = refine(fit(h.transform), target, h.transform, icp, viewpoint=viewpoint)
            if refinement.unguarded is not None:  # converged, refused only by the point fitness: the score judges
                rival = score(refinement.unguarded)
                if rival.score >= h.score.score + s.icp_score_gain:
                    refinement = replace(refinement, accepted=True, transform=refinement.unguarded,
                                         reason=f"ok: the pose score rose ({h.score.score:.3f} -> {rival.score:.3f}) "
                                                f"where the point fitness fell ({refinement.reason})")
            refined_score = score(refinement.transform) if refinement.accepted else None
            if refined_score is not None and refined_score.score < h.score.score - s.icp_score_drop:
                # the ICP slid off what the frame says (a partial view's overlap pulls it): the start stands
                refinement = replace(refinement, accepted=False, transform=h.transform,
                                     reason=f"the ICP lowered the pose score ({h.score.score:.3f} -> "
                                            f"{refined_score.score:.3f}); the start stands")
                verified.append(h.transform)
            elif refinement.accepted:
                verified.append(refinement.transform)
                h = Hypothesis(h.source, refinement.transform, refined_score, refinement)
            h = Hypothesis(h.source, h.transform, h.score, refinement)
        finals.append(h)
    # a global proposal is only a pose once the guarded ICP has accepted its fit (converged, surfaces agree); the
    # matches' pose stands unrefined as it did before the search existed, and an upright one, fitted with its turn
    # held, as well
    finals = sorted((h for h in finals if h.source in (SOURCE_MATCHES, SOURCE_UPRIGHT)
                     or any(h.transform is T for T in verified)), key=lambda h: -h.score.score)
    if not finals:  # every hypothesis the ICP was tried on needed it and was refused: the best one that stands
        # without it (the matches' or an upright pose, lower in the ranking) is still a pose, judged below like any
        finals = [h for h in scored if h.source in (SOURCE_MATCHES, SOURCE_UPRIGHT)][:1]
    if not finals:
        return PoseSearchResult(None, None, tuple(scored), False,
                                f"the guarded ICP refused the fits of all {len(chosen_for_icp)} best proposals and no "
                                "matches or upright pose stands without it")
    best = finals[0]
    same = [h for h in finals if h.source == SOURCE_MATCHES and _close(h.transform, best.transform, centre)]
    if same and best.source != SOURCE_MATCHES:  # the global search only confirmed the matches' pose: say so
        best = same[0]
        finals = [best] + [h for h in finals if h is not best]
    # probes: the chosen pose turned (about the vertical when known) and pulled onto the nearest fit; a turn far
    # from it that explains the frame as well says the data cannot fix the turn
    probes = []
    if s.turn_step_deg > 0:
        probes = [Hypothesis(SOURCE_PROBE, snap(T), score(snap(T)))
                  for T in turned(best.transform, demo_points, s.turn_step_deg, None if up is None else up[1])]
    rivals = [h for h in finals[1:] + probes if rotation_error_deg(h.transform, best.transform) >= s.ambiguity_deg
              and _rival(h.score, best.score, s)]
    if inferred is not None and rivals:  # a mirror-completed cloud: a rival must also explain the frame as well by
        # what the demo saw. Its inferred points carry no colour or descriptor, so a turn that lays them on the
        # live surface (a box-like bus's back on its front) is not told apart by them; a pose the seen points
        # support, and the rival's seen points do not, stands. A pose supported by the inferred side alone
        # (turned by ~180 deg) still meets every rival that the seen side supports
        seen_score = lambda T: score_pose(T, demo_points[~inferred], None if demo_descriptors is None else  # noqa
                                          demo_descriptors[~inferred], live, s,
                                          None if demo_colors is None else demo_colors[~inferred])
        best_seen = seen_score(best.transform)
        rivals = [h for h in rivals if _rival(seen_score(h.transform), best_seen, s)]
    ordered = (tuple(finals) + tuple(h for h in scored if all(h is not f for f in finals))
               + tuple(sorted(probes, key=lambda h: -h.score.score)))
    from .pose_equivalence import equivalent_poses  # it builds on this module's scorer and snapper

    seen = demo_points if inferred is None else demo_points[~inferred]  # only what the demo view can check
    equivalent = tuple(h for h in rivals if equivalent_poses(best.transform, h.transform, seen, demo_view, s))
    rivals = [h for h in rivals if all(h is not e for e in equivalent)]
    if rivals:
        turn = rotation_error_deg(rivals[0].transform, best.transform)
        return PoseSearchResult(None, best, ordered, True,
                                f"ambiguous: poses {turn:.0f} deg apart explain the live frame equally well (scores "
                                f"{best.score.score:.3f} and {rivals[0].score.score:.3f}); the data cannot fix the "
                                f"object's turn", rivals=tuple(rivals))
    if equivalent:
        turn = rotation_error_deg(equivalent[0].transform, best.transform)
        return PoseSearchResult(best.transform, best, ordered, False,
                                f"ok: a pose {turn:.0f} deg apart explains the frame as well but puts the object's "
                                f"surface in the same place (the demo view maps onto itself)", equivalent)
    return PoseSearchResult(best.transform, best, ordered, False, "ok")
