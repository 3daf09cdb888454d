"""The turn of a round object with a handle or spout, read from that part alone: a mug or a jug agrees with the live
frame on its round body under any turn about its axis, and the pose score, ICP and the pooled fit (which count every
point) let the turn drift 5-30 deg. The part off the body (:mod:`~correspondence.revolution`) does not move with the
body: a turn about the axis keeps the body where it is and moves only that part, so the turn that lays the demo's
off-body part on the live frame's off-body part is the object's turn.

:func:`handle_turn` takes a pose (demo -> live) whose body is right, moves the live points back into the demo frame
with it, keeps those off the fitted surface of revolution (the live handle or spout as seen; a turn about the axis
keeps each point's distance from the surface, so which live points are off-body does not depend on the turn being
searched), and scans turns about the axis: each turn's share of those live points within ``match_m`` of the demo's
off-body points (the fused cloud's, every side of the part). The best turn is taken when it explains clearly more of
the live part than the pose as given (``min_gain``) and enough live part is seen (``min_points``); else the pose
stands (the part hidden behind the body: no evidence about the turn, and none invented).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np

from .revolution import Revolution
from .upright_icp import UprightSettings, upright_icp

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class HandleTurnSettings:
    """``span_deg``: turns scanned each way (180: all); ``step_deg``: the scan's step; ``match_m``: a live off-body
    point is explained by a demo off-body point this near; ``off``: a point is off-body where
    :meth:`Revolution.off` is at least this (0.5: 1.5 x the surface tolerance from it); ``min_points``: live
    off-body points needed to judge; ``min_gain``: the best turn must explain this much more of them than the given
    pose."""

    span_deg: float = 180.0
    step_deg: float = 1.0
    match_m: float = 0.004
    off: float = 0.5
    min_points: int = 30
    min_gain: float = 0.15
    margin_m: float = 0.01
    plateau: float = 0.05  # turns explaining within this of the best form its plateau; the turn is its centre
    fine_span_deg: float = 3.0  # after the polish the turn is read again within +- this ...
    fine_step_deg: float = 0.25  # ... in these steps
    decisive: float = 0.5  # the judge is decisive when the chosen turn explains at least this share of the live part
    refit: bool = True  # the pose (turned, or checked by a seen handle) fitted upright at the end (:func:`_refit`)
    refit_fine: bool = False  # ... its turn read again from the handle after the fit (:func:`fine_turn`)
    refit_loss: float = 0.3  # ... refused when the handle then explains this much less than the pose before it (a
    # gross loss: right fits lost up to 0.15, the share being flat over +-4 deg and noisy by the millimetre)
    upright: UprightSettings = field(default_factory=UprightSettings)  # ... the fit's settings


@dataclass(frozen=True)
class HandleTurn:
    """The scan's outcome: ``turn_deg`` the best turn about the axis (demo frame), ``explained`` its share of the
    live off-body points, ``explained_given`` the given pose's, ``points`` how many live off-body points there were,
    ``transform`` the turned pose (or the given one when it stands), ``applied`` whether it was turned."""

    turn_deg: float
    explained: float
    explained_given: float
    points: int
    transform: np.ndarray
    applied: bool
    reason: str


def turn_about_axis(revolution: Revolution, degrees: float) -> np.ndarray:
    """The 4x4 turn by ``degrees`` about the revolution's axis (demo frame)."""
    axis, theta = revolution.axis, np.radians(degrees)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    R = np.eye(3) + np.sin(theta) * K + (1 - np.cos(theta)) * K @ K
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = revolution.centre - R @ revolution.centre
    return T


def live_part(T: np.ndarray, live_points: np.ndarray, demo_points: np.ndarray, revolution: Revolution,
              settings: HandleTurnSettings) -> np.ndarray:
    """The live points (moved into the demo frame by ``inv(T)``) off the body and within the object's extent (its
    height range and largest distance from the axis, plus ``margin_m``): the handle or spout the live camera sees."""
    inv = np.linalg.inv(T)
    back = live_points @ inv[:3, :3].T + inv[:3, 3]
    axis, centre = revolution.axis, revolution.centre

    def cylindrical(p):
        rel = p - centre
        h = rel @ axis
        return h, np.linalg.norm(rel - h[:, None] * axis, axis=1)

    hd, rd = cylindrical(demo_points)
    hl, rl = cylindrical(back)
    m = settings.margin_m
    inside = (hl >= hd.min() - m) & (hl <= hd.max() + m) & (rl <= rd.max() + m)
    return back[inside & (revolution.off(back) >= settings.off)]


def _demo_part(demo_points: np.ndarray, revolution: Revolution, settings: HandleTurnSettings) -> np.ndarray:
    return demo_points[revolution.off(demo_points) >= settings.off]


def explained_at(T: np.ndarray, demo_points: np.ndarray, live_points: np.ndarray, revolution: Revolution,
                 settings: HandleTurnSettings | None = None) -> tuple[float, int]:
    """(share of the live off-body points that the demo's off-body part explains under ``T`` as it is, how many live
    off-body points there are): how well a pose places the handle or spout."""
    from scipy.spatial import cKDTree

    s = settings or HandleTurnSettings()
    demo_points = np.asarray(demo_points, dtype=np.float64)
    demo_part = _demo_part(demo_points, revolution, s)
    live = live_part(T, np.asarray(live_points, dtype=np.float64), demo_points, revolution, s)
    if len(live) == 0 or len(demo_part) == 0:
        return 0.0, len(live)
    return float(np.isfinite(cKDTree(demo_part).query(live, distance_upper_bound=s.match_m)[0]).mean()), len(live)


def handle_turn(T: np.ndarray, demo_points: np.ndarray, live_points: np.ndarray, revolution: Revolution,
                settings: HandleTurnSettings | None = None) -> HandleTurn:
    """The pose ``T`` (demo -> live) turned about the revolution axis so that the demo's off-body part explains the
    live off-body part best (module doc); ``demo_points`` the demo cloud (every view's) in the demo frame."""
    from scipy.spatial import cKDTree

    s = settings or HandleTurnSettings()
    demo_points = np.asarray(demo_points, dtype=np.float64)
    demo_part = _demo_part(demo_points, revolution, s)
    live = live_part(T, np.asarray(live_points, dtype=np.float64), demo_points, revolution, s)
    if len(live) < s.min_points or len(demo_part) < s.min_points:
        return HandleTurn(0.0, 0.0, 0.0, len(live), T, False,
                          f"too little of the handle or spout seen ({len(live)} live, {len(demo_part)} demo points "
                          f"off the body; {s.min_points} needed)")
    turns, explained = _scan(cKDTree(demo_part), live, revolution, s.span_deg, s.step_deg, s.match_m)
    given = float(explained[int(np.argmin(np.abs(turns)))])
    best = int(np.argmax(explained))
    turn, value = _plateau_centre(turns, explained, best, s.plateau, s.span_deg >= 180), float(explained[best])
    if value < given + s.min_gain:
        return HandleTurn(turn, value, given, len(live), T, False,
                          f"the pose's turn stands (best turn {turn:+.0f} deg explains {value:.2f} of the live handle "
                          f"against {given:.2f})")
    return HandleTurn(turn, value, given, len(live), T @ turn_about_axis(revolution, turn), True,
                      f"turned {turn:+.0f} deg about the body's axis: the handle or spout explains {given:.2f} -> "
                      f"{value:.2f} of the live one")




def seat_body(T: np.ndarray, live_points: np.ndarray, revolution: Revolution, reach_m: float = 0.012,
              step_m: float = 0.001) -> np.ndarray:
    """``T`` moved across the axis (in the demo frame) so that the most live points lie on the body's surface,
    searched in ``step_m`` steps within ``reach_m``: a pose a few millimetres off lays the live body off the fitted
    surface (its tolerance is 3 mm), and the body would then read as handle. Not along the axis: the object stands on
    the table in both frames and the pose's height is fitted already, while a body whose radius hardly changes with
    height would let the count slide it (measured: a mug seated along its axis too came out 1.2 cm off). The turn is
    held: the body agrees under any turn, so only the handle may fix it (:func:`handle_turn`)."""
    inv = np.linalg.inv(T)
    back = np.asarray(live_points, dtype=np.float64) @ inv[:3, :3].T + inv[:3, 3]
    axis = revolution.axis
    basis = np.linalg.svd(np.eye(3) - np.outer(axis, axis))[0][:, :2].T  # two unit vectors across the axis
    rel = back - revolution.centre
    r = np.linalg.norm(rel - (rel @ axis)[:, None] * axis, axis=1)
    near = back[r <= float(revolution.radii.max()) + 2 * reach_m]
    if len(near) == 0:
        return T
    steps = np.arange(-reach_m, reach_m + 1e-9, step_m)
    # every shift at once: a shift across the axis keeps each point's height, so its slice and the slice's radius,
    # and changes only its distance from the axis (the grid in one array: the same seat, 42 ms a call, not 128 ms)
    rel = near - revolution.centre
    radius = revolution.radii[np.clip(np.searchsorted(revolution.edges, rel @ axis) - 1, 0, len(revolution.radii) - 1)]
    x, y = rel @ basis[0], rel @ basis[1]
    a, b = (g.ravel() for g in np.meshgrid(steps, steps, indexing="ij"))  # the order the grid was scanned in
    counts = np.concatenate([(np.abs(np.hypot(x - a[k:k + 64, None], y - b[k:k + 64, None]) - radius)
                              <= revolution.tolerance).sum(1) for k in range(0, len(a), 64)])
    k = int(np.argmax(counts))  # the first of equal counts, as the scan kept
    on_axis = int((np.abs(np.hypot(x, y) - radius) <= revolution.tolerance).sum())
    best = a[k] * basis[0] + b[k] * basis[1] if counts[k] > on_axis else np.zeros(3)
    M = np.eye(4)
    M[:3, 3] = best
    return T @ M


def level(T: np.ndarray, revolution: Revolution, up_live: np.ndarray) -> np.ndarray:
    """``T`` tilted (about the moved body's centre) so that the body's axis lies along the live vertical ``up_live``:
    the body is upright on the table in both frames, and a pose tilted by a few degrees lays the body off the live
    body, which then reads as handle (module doc)."""
    a = T[:3, :3] @ revolution.axis
    b = np.asarray(up_live, dtype=np.float64) / np.linalg.norm(up_live)
    v, c = np.cross(a, b), float(a @ b)
    if np.linalg.norm(v) < 1e-9:
        return T
    K = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    R = np.eye(3) + K + K @ K / (1 + c)
    centre = T[:3, :3] @ revolution.centre + T[:3, 3]
    M = np.eye(4)
    M[:3, :3], M[:3, 3] = R, centre - R @ centre
    return M @ T


@dataclass(frozen=True)
class HandleJudge:
    """What the handle said about the chosen pose of a multi-view demo: the pose (levelled, turned by the handle when
    it was, translation refitted), the scan, and how the handle judges another pose (:meth:`worse`)."""

    transform: np.ndarray
    scan: HandleTurn
    demo_points: np.ndarray
    live_points: np.ndarray
    revolution: Revolution
    settings: HandleTurnSettings
    up: np.ndarray | None = None  # the live vertical

    @property
    def decisive(self) -> bool:
        """Enough of the handle is seen, and the chosen pose explains most of it."""
        return self.scan.points >= self.settings.min_points and max(
            self.scan.explained, self.scan.explained_given) >= self.settings.decisive

    def worse(self, T: np.ndarray) -> bool:
        """Whether pose ``T`` explains the live handle clearly less than the chosen pose (by ``min_gain``): then it
        is no rival however well its body agrees (the body agrees under any turn)."""
        if not self.decisive:
            return False
        chosen = self.scan.explained if self.scan.applied else self.scan.explained_given
        seated = seat_body(T if self.up is None else level(T, self.revolution, self.up), self.live_points,
                           self.revolution)
        other, _ = explained_at(seated, self.demo_points, self.live_points, self.revolution, self.settings)
        return other < chosen - self.settings.min_gain


def turn_by_handle(T: np.ndarray, fitter, settings: HandleTurnSettings | None = None) -> HandleJudge | None:
    """The chosen pose ``T`` (primary -> live) of a multi-view demo read again by its handle or spout: levelled (the
    body's axis on the live vertical, :func:`level`), the body seated on the live points (:func:`seat_body`), and the
    turn about the axis scanned (:func:`handle_turn`); then, when the handle was seen (turned by it or not), the pose
    fitted upright (:func:`_refit`). None when the fused cloud is no round body with a part off it, or without the
    vertical."""
    s = settings or HandleTurnSettings()
    revolution = getattr(fitter, "revolution", None)
    if revolution is None or fitter.up is None:
        return None
    seated = seat_body(level(T, revolution, fitter.up), fitter.live.cloud, revolution)
    scan = handle_turn(seated, fitter.points, fitter.live.cloud, revolution, s)
    _LOG.debug("handle turn: body seated %.1f mm, %s", 1000 * np.linalg.norm((np.linalg.inv(T) @ seated)[:3, 3]),
               scan.reason)  # the scan's outcome, for diagnosis (logging level DEBUG)
    if scan.applied:  # turned by the handle: fitted upright, else the guarded ICP polish as before
        transform = _refit(scan.transform, fitter, revolution, s)
        transform = _polish(scan, fitter, revolution, s) if transform is None else transform
    elif scan.points >= s.min_points:  # the handle seen where the pose puts it: the pose made precise upright
        transform = _refit(level(T, revolution, fitter.up), fitter, revolution, s)
        transform = T if transform is None else transform
    else:  # the handle hidden: nothing fixes the turn, and the pose stands as it is
        transform = T
    return HandleJudge(transform, scan, fitter.points, fitter.live.cloud, revolution, s, fitter.up)


def _scan(tree, live: np.ndarray, revolution: Revolution, span_deg: float, step_deg: float,
          match_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Turns about the axis within +- ``span_deg`` (180: the circle once) and the share of the live off-body points
    each explains (within ``match_m`` of the demo's part, ``tree``)."""
    turns = np.arange(-span_deg, span_deg + 1e-9, step_deg)
    turns = turns[turns > -180.0 + 1e-9] if span_deg >= 180 else turns
    explained = np.empty(len(turns))
    for k, d in enumerate(turns):  # the live part turned back by -d = the demo part turned by d
        M = turn_about_axis(revolution, -d)
        moved = live @ M[:3, :3].T + M[:3, 3]
        explained[k] = np.isfinite(tree.query(moved, distance_upper_bound=match_m)[0]).mean()
    return turns, explained


def _plateau_centre(turns: np.ndarray, explained: np.ndarray, best: int, tolerance: float, circular: bool) -> float:
    """The centre of the run of turns around ``best`` that explain within ``tolerance`` of it. Why: a share of
    points within a distance is flat over every turn that keeps the part within it (a handle 5 cm out, 4 mm: about
    +-4 deg), and its argmax falls anywhere on that plateau; the plateau is symmetric about the true turn."""
    n, step = len(turns), float(turns[1] - turns[0]) if len(turns) > 1 else 0.0
    floor = explained[best] - tolerance
    left = right = 0
    while left < n - 1 and (circular or best - left - 1 >= 0) and explained[(best - left - 1) % n] >= floor:
        left += 1
    while right < n - 1 - left and (circular or best + right + 1 < n) and explained[(best + right + 1) % n] >= floor:
        right += 1
    centre = float(turns[best]) + step * (right - left) / 2.0
    return (centre + 180.0) % 360.0 - 180.0 if circular else centre


def fine_turn(T: np.ndarray, demo_points: np.ndarray, live_points: np.ndarray, revolution: Revolution,
              settings: HandleTurnSettings | None = None) -> np.ndarray:
    """``T`` turned about the axis to the centre of the handle's plateau within +- ``fine_span_deg`` (steps of
    ``fine_step_deg``): the turn read again after an ICP polish, which fits the body and the rest but lets a round
    body's turn slide (polishing the true pose of a mug turned it 1.9 deg). ``T`` itself with too little handle."""
    from scipy.spatial import cKDTree

    s = settings or HandleTurnSettings()
    demo_part = _demo_part(np.asarray(demo_points, dtype=np.float64), revolution, s)
    live = live_part(T, np.asarray(live_points, dtype=np.float64), demo_points, revolution, s)
    if len(live) < s.min_points or len(demo_part) < s.min_points:
        return T
    turns, explained = _scan(cKDTree(demo_part), live, revolution, s.fine_span_deg, s.fine_step_deg, s.match_m)
    turn = _plateau_centre(turns, explained, int(np.argmax(explained)), s.plateau, False)
    return T @ turn_about_axis(revolution, turn)


def _polish(scan: HandleTurn, fitter, revolution: Revolution, s: HandleTurnSettings) -> np.ndarray:
    """The turned pose made precise by the fused cloud's guarded ICP (``fitter.polish``: kept when accepted and
    turning it by at most 5 deg) when the handle still explains as much of the live one (within 0.05): the scan places
    the turn in 1 deg steps and the body in 1 mm steps, too coarse for keypoints within 5 px; ICP is what makes a
    pose precise, and the handle guards the turn it settles on."""
    polish = getattr(fitter, "polish", None)
    if polish is None or getattr(fitter, "score", None) is None:
        return scan.transform
    _, polished = polish(scan.transform, float("nan"))
    if polished is scan.transform:
        return scan.transform
    polished = fine_turn(polished, fitter.points, fitter.live.cloud, revolution, s)
    explained, _ = explained_at(polished, fitter.points, fitter.live.cloud, revolution, s)
    return polished if explained >= scan.explained - 0.05 else scan.transform


def _refit(start: np.ndarray, fitter, revolution: Revolution, s: HandleTurnSettings) -> np.ndarray | None:
    """The levelled pose ``start`` fitted by the upright ICP (:func:`~correspondence.upright_icp.upright_icp`:
    translation and turn about the live vertical, tilt held) on the fused cloud's visible part facing the live camera
    (with ``refit_fine`` its turn then read again from the handle, :func:`fine_turn`); None when the fit is refused,
    when the handle then explains ``refit_loss`` less than at ``start``, or when the fitter has no visibility or live
    normals (the pose as before). Why: the scan places the
    body in 1 mm and the turn in 1 deg steps, and the six-degree polish tilts and slides a round body; measured on
    the four-view rows the turned and the handle-checked poses were 0.6-2 deg and 1.5-5 mm off, their rims 5-10 px
    (docs/multiview_demo.md "Handle turn")."""
    visible, live_normals = getattr(fitter, "visible", None), getattr(fitter, "live_normals", None)
    if not s.refit or visible is None or live_normals is None:
        return None
    fit = upright_icp(start, fitter.points, fitter.live.cloud, live_normals(), fitter.up, visible, s.upright,
                      normals=getattr(fitter, "normals", None))
    if not fit.accepted:
        _LOG.debug("handle turn: upright refit refused: %s", fit.reason)
        return None
    refit = fine_turn(fit.transform, fitter.points, fitter.live.cloud, revolution, s) if s.refit_fine else fit.transform
    before, _ = explained_at(start, fitter.points, fitter.live.cloud, revolution, s)
    after, _ = explained_at(refit, fitter.points, fitter.live.cloud, revolution, s)
    _LOG.debug("handle turn: upright refit turned %.2f deg, moved %.1f mm, handle explains %.2f -> %.2f",
               fit.turn_deg, 1000 * fit.shift_m, before, after)
    return refit if after >= before - s.refit_loss else None


def turn_outcome(outcome: tuple, fitter) -> tuple[tuple, HandleJudge | None]:
    """A multi-view choice's outcome (alignment, pose search result): the chosen pose's turn about a round body's
    axis read again from its handle or spout (:func:`turn_by_handle`): turned when the handle says so (``solver``
    ``...+handle``; fitted upright only: ``...+upright-icp``), and the handle's judge for the rival check. Why: the fused
    score, the pool and the ICP count every point, and a mug's body agrees under any turn; on the bench's +-180 deg
    rows the mugs, jugs and kettles came out 8-160 deg off while their live handle said where the turn was (docs/multiview_demo.md "Handle turn")."""
    alignment, result = outcome
    if alignment is None or not alignment.success or alignment.transform is None:
        return outcome, None
    judge = turn_by_handle(alignment.transform, fitter)
    if judge is None or judge.transform is alignment.transform:
        return outcome, judge
    tag = "+handle" if judge.scan.applied else "+upright-icp"  # turned by the handle / only fitted upright (_refit)
    alignment = replace(alignment, transform=judge.transform, solver=alignment.solver + tag)
    if result is not None:
        reason = f"ok: {judge.scan.reason}" if judge.scan.applied else result.reason
        result = replace(result, transform=judge.transform, reason=reason,
                         chosen=None if result.chosen is None else replace(result.chosen, transform=judge.transform))
    return (alignment, result), judge


__all__ = ["HandleJudge", "HandleTurn", "HandleTurnSettings", "explained_at", "fine_turn", "handle_turn", "level", "live_part",
           "seat_body", "turn_about_axis", "turn_by_handle", "turn_outcome"]
