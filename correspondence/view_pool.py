"""A multi-view demo's last step: the candidate views' pose hypotheses pooled, each fitted on the fused cloud and
judged by the same score, so the view choice can take a pose that a view's own search ranked second.

Why: each candidate view's pose search (:func:`~correspondence.pose_search.search_pose`, run on that view's partial
cloud) generates a pose within a few degrees of the truth in its yaw sweep, but ranks it with the view's own cloud,
which for a round object (a mug, whose handle is the only cue) lets a turn 10-55 deg off score as well or better
(docs/multiview_demo.md "Pooled hypotheses": in 3 of the 5 failures at +-180 deg the right view's sweep held a pose
within 4 deg of the truth that its own score put below the one it returned; a fourth refused as ambiguous while it
held one). The fused cloud sees the object from every side, so it tells those turns apart, but only once each pose
is fitted to it: a pose fitted on one view's cloud sits a few millimetres off the fused cloud's surface, and the
score (1 cm surface band, 4 mm colour band) punishes that more than a wrong turn that is fitted. Hence, per pooled
pose: the translation refitted with the turn held, on the fused cloud's visible part (:mod:`~correspondence.
yaw_sweep`'s fit and placement), and the best few also turned by half the sweep step both ways (the sweep's grid
leaves the nearest turn up to that far off)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from .alignment import rotation_error_deg
from .icp import IcpSettings, IcpTarget, refine
from .pose_search import LiveFrame, _about, _distinct
from .yaw_sweep import FIT_DISTANCES_M, Placement, _axis_angle, fit_translation, place

POOL_TOP = 3  # distinct hypotheses per candidate view's search pooled beside its chosen pose (best own score first):
# 3 views x 4 poses keeps the pooled fits to ~12 per frame
SELF_MAP_SHARE = 0.9  # the share of the fused cloud (weighed) that a motion must lay within surface_m of the cloud
# itself, both ways, for two poses to put the object in the same place: a whole cloud of a 2-fold stool maps onto
# itself under its 180-deg turn; a kettle's body does under any turn, but weighed by the turn weights its spout and
# handle count as much as the body
TURN_TOP = 3  # the best pooled poses that are also tried turned by +-half the sweep step


@dataclass
class FusedFit:
    """Fits a primary -> live pose on the fused cloud's visible part and scores it (``score``: the multi-view pose
    score, :meth:`~correspondence.multiview_pose.MultiViewDemo.pose_score`). ``visible(points, T)``: the rows the
    live camera would see; ``up``: the vertical in the live camera (None: no turns)."""

    points: np.ndarray
    live: LiveFrame
    score: Callable[[np.ndarray], float]
    visible: Callable[[np.ndarray, np.ndarray], np.ndarray]
    up: np.ndarray | None = None
    turn_deg: float = 2.5
    icp: IcpSettings | None = None  # None: no ICP polish of the pooled choice (:meth:`polish`)
    rival_deg: float = 20.0  # a pose turned at least this far from the chosen one ... (:func:`view_rival`)
    rival_margin: float = 0.02  # ... that scores within this of it (or higher) on the fused cloud is a rival
    equivalent: Callable[[np.ndarray, np.ndarray], bool] | None = None  # whether two poses put the demo's surface
    # in the same place (:func:`~correspondence.pose_equivalence.equivalent_poses` on the primary view): no rival
    revolution: object | None = None  # the fused cloud's round body (:mod:`~correspondence.revolution`): the
    # chosen pose's turn is read again from its handle or spout (:mod:`~correspondence.handle_turn`); None: not
    check: Callable[[np.ndarray], object] | None = None  # a pose's contradiction of the live frame on the fused
    # cloud (:func:`~correspondence.multiview_confirmation.fused_check`): a rival the frame contradicts is no rival
    normals: np.ndarray | None = None  # the fused points' outward normals (each towards the camera that saw it):
    # the upright fit of a round body fits only the points facing the live camera (:mod:`~correspondence.upright_icp`)
    _placement: Placement | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        from scipy.spatial import cKDTree

        self._tree = cKDTree(self.live.cloud)
        self._target: IcpTarget | None = None  # the live cloud's normals, built on the first polish
        self._placement = Placement(self.live.depth, np.asarray(self.live.mask, bool), self.live.intrinsics,
                                    self._tree, len(self.live.cloud), unknown=self.live.unknown)

    def fit(self, T: np.ndarray) -> np.ndarray:
        """``T`` with its translation refitted (turn held) on the fused points the live camera sees under it."""
        seen = self.points[self.visible(self.points, T)]
        if len(seen) < 10:
            return T
        R, live = T[:3, :3], self.live
        t = fit_translation(R, seen, live.cloud, self._tree, live.depth, live.intrinsics, T[:3, 3],
                            FIT_DISTANCES_M[-3:])
        fitted = T.copy()
        fitted[:3, 3] = place(R, seen, t, self._placement)
        return fitted

    def best(self, T: np.ndarray) -> tuple[float, np.ndarray]:
        """(score, pose): ``T`` as it is or refitted, whichever scores higher (a pose already on the fused surface
        is not moved off it)."""
        fitted = self.fit(T)
        return max((self.score(T), T), (self.score(fitted), fitted), key=lambda s: s[0])

    def polish(self, T: np.ndarray, score: float) -> tuple[float, np.ndarray]:
        """(score, pose): the guarded ICP of the fused points the live camera sees under ``T`` onto the live cloud,
        kept when it is accepted (converged, surfaces agree) and turns the pose by at most twice ``turn_deg``; else
        ``T``. Why: the pool's poses are placed in 5 mm steps and turned by half a sweep step, and within that the
        score (1 cm surface and 4 mm colour bands) cannot rank poses: a kettle's truth turned 2.5 deg and placed
        scores 0.696 against the truth's 0.668. The score picks the turn's basin; the ICP, the pose within it
        (that turned kettle comes back to 0.27 deg). Without the polish a searched pose made precise by ICP
        (0.01 deg) could be replaced by one 2.5 deg off."""
        seen = self.points[self.visible(self.points, T)]
        if self.icp is None or len(seen) < 10:
            return score, T
        if self._target is None:
            self._target = IcpTarget(self.live.cloud)
        result = refine(seen, self._target, T, self.icp)
        if not result.accepted or result.correction_deg > 2 * self.turn_deg:
            return score, T
        return self.score(result.transform), result.transform

    def live_normals(self) -> np.ndarray:
        """The live cloud's normals (the ICP target's, built once): what the upright fit of a round body pulls along
        (:mod:`~correspondence.upright_icp`)."""
        if self._target is None:
            self._target = IcpTarget(self.live.cloud)
        neighbours = (self.icp or IcpSettings()).normal_neighbours
        return np.asarray(self._target.cloud(neighbours).normals)

    def turned(self, T: np.ndarray) -> list[np.ndarray]:
        """``T`` turned by +-``turn_deg`` about the vertical through the moved cloud's centre."""
        if self.up is None or self.turn_deg <= 0:
            return []
        centre = (self.points @ T[:3, :3].T + T[:3, 3]).mean(0)
        return [_about(_axis_angle(self.up, np.radians(a)), centre) @ T for a in (-self.turn_deg, self.turn_deg)]


@dataclass(frozen=True)
class Pooled:
    """One pooled pose: the view it came from, its fused score, the pose, the hypothesis it came from (None: the
    view's searched pose itself) and whether it is that searched pose unchanged."""

    view: int
    score: float
    transform: np.ndarray
    source: object
    is_searched: bool


def pool_view(view: int, searched: np.ndarray | None, hypotheses, fitter: FusedFit, top: int = POOL_TOP
              ) -> list[Pooled]:
    """A view's searched pose (if any) and its search's ``top`` distinct best hypotheses (primary -> live), each
    as :meth:`FusedFit.best` leaves it."""
    centre = fitter.points.mean(0)
    out = []
    if searched is not None:
        score, T = fitter.best(searched)
        out.append(Pooled(view, score, T, None, T is searched))
    for h in _distinct(list(hypotheses), top, centre):
        if searched is not None and np.allclose(h.transform, searched):
            continue
        score, T = fitter.best(h.transform)
        out.append(Pooled(view, score, T, h, False))
    return out


def turn_best(pooled: list[Pooled], fitter: FusedFit, top: int = TURN_TOP) -> list[Pooled]:
    """The ``top`` best pooled poses also tried turned by half the sweep step each way (fitted), the better kept."""
    ranked = sorted(pooled, key=lambda p: -p.score)
    out = []
    for k, p in enumerate(ranked):
        if k < top:
            for T in fitter.turned(p.transform):
                score, fitted = fitter.best(T)
                if score > p.score:
                    p = Pooled(p.view, score, fitted, p.source, False)
        out.append(p)
    return out


@dataclass(frozen=True)
class Rival:
    """A pose of another candidate view (or of the chosen view's pool) turned ``turn_deg`` from the chosen pose that
    explains the fused cloud about as well: ``score`` against the chosen pose's ``chosen_score``."""

    view: int
    turn_deg: float
    score: float
    chosen_score: float
    transform: np.ndarray | None = None  # the rival pose (primary -> live), fitted

    @property
    def reason(self) -> str:
        return (f"ambiguous: the views disagree: view {self.view}'s pose {self.turn_deg:.0f} deg from the chosen one "
                f"explains the fused cloud as well or better (scores {self.chosen_score:.3f} and {self.score:.3f}); "
                f"the data cannot fix the object's turn")


def view_rival(chosen: np.ndarray, chosen_score: float, poses: list[tuple[int, np.ndarray, float | None]],
               fitter: FusedFit, handle=None) -> Rival | None:
    """The best of ``poses`` ((view, pose, fused score or None: fitted and scored here)) turned at least
    ``fitter.rival_deg`` from ``chosen`` that scores within ``fitter.rival_margin`` of ``chosen_score`` or higher,
    and does not put the demo's surface where ``chosen`` does (``fitter.equivalent``); None when there is none.
    Why: each view's search judges its rivals on its own partial cloud, and the view choice compares only the
    searched poses; a turn that another view found (or whose search refused) can explain the fused cloud as well
    as the chosen one, or better. Then the views disagree and the data does not fix the turn: a kettle whose spout
    and handle sit opposite (the primary's 180-deg turn at 0.701, view 1's pose 2.7 deg off at 0.690), a jug whose
    only posed view lands 160 deg off (0.128) while another view's refused search held a pose 3 deg off at 0.807.
    A pose that contradicts the live frame (``fitter.check``'s rules) is no rival: its score is a near tie, but the
    frame already tells it apart (docs/multiview_demo.md "Poses that contradict the frame, four views").
    ``handle`` (:class:`~correspondence.handle_turn.HandleJudge`): a pose that explains the live handle or spout
    clearly less than the chosen one is no rival (a round body agrees under any turn; the handle is what tells)."""
    best: Rival | None = None
    for view, T, score in poses:
        turn = rotation_error_deg(T, chosen)
        if turn < fitter.rival_deg:
            continue
        if score is None:
            score, T = fitter.best(T)
        if score < chosen_score - fitter.rival_margin or (best is not None and score <= best.score):
            continue
        if fitter.equivalent is not None and fitter.equivalent(chosen, T):
            continue
        if handle is not None and handle.worse(T):
            continue
        if fitter.check is not None and fitter.check(T).reason is not None:
            continue  # the live frame contradicts it (free space, colour, surface, handle): no rival
        best = Rival(view, turn, float(score), float(chosen_score), T)
    return best


def refuse_rival(chosen: int, outcome: tuple, pooled: list[Pooled], outcomes: list, fitter: FusedFit,
                 handle=None) -> tuple[tuple, Rival | None, int]:
    """(``outcome``, None, ``chosen``) for the chosen view ``chosen``'s (alignment, search result); or a refusal
    (ambiguous, no pose; with the rival) when a pose turned far from the chosen one explains the fused cloud about as
    well (:func:`view_rival`): the chosen view's other pooled poses and every other candidate's searched pose. Not
    the hypotheses another view's search ranked below its own choice, nor a refused search's: measured, they vetoed
    right poses as often as wrong ones (a jug's refused primary held the truth at 0.807 against a pose 160 deg off;
    another jug's refused view held a wrong turn 0.33 above the right pose; a mug's, 0.03 above). ``outcomes``:
    :func:`~correspondence.view_choice.choose_searched`'s (candidate, (alignment, search result), score) per
    candidate view; ``pooled``: the chosen view's pool, its best the chosen pose; ``handle``: as :func:`view_rival`.

    When the views disagree, the rival explains the fused cloud better and the live frame contradicts the chosen
    pose but not the rival (``fitter.check``), the rival wins (its view's index is returned, its pose polished, :meth:`FusedFit.polish`), unless a third pose
    rivals it in turn: the frame, not the score, settles that disagreement (a jug whose chosen pose 146 deg off put
    6 % of its points in free space, while view 1's pose 3.7 deg off scored 0.69 against its 0.42)."""
    alignment, result = outcome
    best = max(pooled, key=lambda p: p.score)
    poses = [(p.view, p.transform, p.score) for p in pooled if p is not best]
    for candidate, (other, _), _ in outcomes:
        if candidate.index != chosen and other is not None and other.success and other.transform is not None:
            poses.append((candidate.index, other.transform, None))
    rival = view_rival(alignment.transform, best.score, poses, fitter, handle)
    if rival is None:
        return outcome, None, chosen
    if (rival.score > best.score and fitter.check is not None
            and fitter.check(alignment.transform).reason is not None):
        others = [p for p in poses if p[1] is not rival.transform] + [(chosen, alignment.transform, best.score)]
        if view_rival(rival.transform, rival.score, others, fitter) is None:
            return _take_rival(outcome, rival, fitter), None, rival.view
    alignment = replace(alignment, success=False, transform=None, reason=rival.reason)
    if result is not None:
        result = replace(result, transform=None, ambiguous=True, reason=rival.reason)
    return (alignment, result), rival, chosen


def _take_rival(outcome: tuple, rival: Rival, fitter: FusedFit) -> tuple:
    """``outcome`` with the rival's pose (polished by ICP on the fused cloud) as the answer."""
    alignment, result = outcome
    _, T = fitter.polish(rival.transform, rival.score)
    reason = (f"ok: view {rival.view}'s pose {rival.turn_deg:.0f} deg from the chosen one, which the live frame "
              "contradicts")
    alignment = replace(alignment, success=True, transform=T, reason="ok", solver=f"view-{rival.view}+fused-fit")
    if result is not None:
        chosen = result.chosen
        result = replace(result, transform=T, chosen=None if chosen is None else replace(chosen, transform=T),
                         reason=reason)
    return alignment, result


def with_view_poses(outcome: tuple, poses: list, check: Callable | None) -> tuple:
    """``outcome`` with ``poses`` ((label, pose, fused score)) and each one's contradiction values (``check``) in
    its search result's ``view_poses``: what the view choice weighed, for the bench to judge on the truth."""
    alignment, result = outcome
    if result is None:
        return outcome
    judged = tuple((label, T, score, None if check is None else check(T).as_dict()) for label, T, score in poses)
    return alignment, replace(result, view_poses=judged)


def maps_onto_itself(points: np.ndarray, motion: np.ndarray, surface_m: float, weights: np.ndarray | None = None,
                     share: float = SELF_MAP_SHARE) -> bool:
    """Whether ``motion`` (demo frame -> demo frame) lays at least ``share`` of ``points`` (weighed by ``weights``)
    within ``surface_m`` of ``points``, and so does its inverse: the fused cloud sees every side, so a motion that
    maps it onto itself is a symmetry of what the demo showed (geometry only, as BOP's MSSD judges)."""
    from scipy.spatial import cKDTree

    tree = cKDTree(points)
    w = np.ones(len(points)) if weights is None else np.asarray(weights, dtype=np.float64)
    for m in (motion, np.linalg.inv(motion)):
        moved = points @ m[:3, :3].T + m[:3, 3]
        near = np.isfinite(tree.query(moved, distance_upper_bound=surface_m)[0])
        if float((w * near).sum() / max(w.sum(), 1e-12)) < share:
            return False
    return True
