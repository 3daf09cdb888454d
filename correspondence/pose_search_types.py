"""The pose search's settings and results (:mod:`correspondence.pose_search`), apart from the search so that the
modules around it (pose confirmation, the multi-view pool, the bench) can name them without the search's code."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .icp import IcpResult

@dataclass(frozen=True)
class PoseSearchSettings:
    global_hypotheses: bool = True  # propose FPFH + RANSAC and FGR poses beside the appearance-match pose
    ransac_runs: int = 2  # FPFH + RANSAC runs (seeds 0..n-1)
    ransac_iterations: int = 50000
    fgr: bool = True
    turn_step_deg: float = 30.0  # also the best proposal turned by multiples of this about the moved cloud's
    # principal axes (0: no turns)
    sweep_step_deg: float = 5.0  # with the vertical known: an upright pose every this many degrees of yaw, its
    # translation fitted on the visible overlap and placed on the depth evidence (:mod:`correspondence.yaw_sweep`;
    # 0: none). 5, not 10: success needs < 5 deg, and a 10-deg grid leaves the nearest turn up to 5 deg off
    voxel_fraction: float = 1 / 30  # voxel size: this share of the demo cloud's diagonal (clamped to 3-30 mm)
    refine_top: int = 4  # hypotheses refined with ICP, best pre-score first
    snap: bool = True  # pull every hypothesis onto its nearest fit (a quick coarse ICP) before scoring it
    surface_m: float = 0.01  # a moved point within this of the live depth agrees with it
    free_space_m: float = 0.02  # a moved point this far in front of the seen surface contradicts it
    free_space_window_px: int = 1  # ... of every surface seen within this many px: a right pose's point on a near
    # part's edge projects, by pixel rounding, onto the far surface beside it (5 % of a truck's points at its true
    # pose, which then lost to a pose 2.5 deg off; docs/pose_search.md). 0: the pixel alone. The silhouette test
    # stays per pixel (tolerant there too, a 2-fold stool's 90-deg rival became an ambiguity)
    appearance_weight: float = 1.0
    icp_score_drop: float = 0.02  # a refinement that lowers the score by more is undone
    icp_score_gain: float = 0.01  # one the ICP's point fitness refused (a share of nearest points within 8 mm, which
    # a sparse cloud's sampling sways: a mug 6.5 deg off had more than its truth) is kept when it raises the score
    contradiction_weight: float = 4.0  # a point the pose puts where the frame says nothing is (free space, another
    # colour) costs this many agreeing points: a partial view can hide a surface, never show a wrong one
    color_surface_m: float = 0.004  # colours are compared only this near the seen surface (a thin wall's inside
    # lies within surface_m of its outside)
    color_tolerance: float = 0.1  # chromaticity distance (r, g, b over their sum) above which a pair disagrees
    color_window_px: int = 3  # a colour agrees when a pixel this far (or nearer) has it
    color_dark: float = 0.12  # mean sRGB value (0-1) under which a pixel's chromaticity is noise, not compared
    ambiguity_deg: float = 20.0
    ambiguity_margin: float = 0.02  # score gap under which two hypotheses that far apart are both plausible
    consistent_free_space: float = 0.05  # a rival contradicting at most this share of its points (or no more than
    consistent_agreement: float = 0.3  # the best) on at least this share of the live surface also explains it
    appearance_decides: float = 0.1  # ... unless the best's appearance contrast is this much higher
    explains_margin: float = 0.15  # ... and whose support (PoseScore.support) is within this of the best
    # a rival that puts the demo's surface where the best puts it is no ambiguity (a symmetric object's other turn):
    # moved by the motion between them, the demo cloud, checked against the demo's own depth and mask, contradicts
    # at most this share of its points (free space, off the silhouette) ...
    equivalent_contradiction: float = 0.03
    equivalent_agreement: float = 0.4  # ... and at least this share lands on the demo surface
    equivalent_window_px: int = 3  # ... tolerance of the silhouette and free-space test, pixels
    # early stop: the matches' pose, pulled onto its nearest fit, that scores at least this and contradicts the live
    # depth on at most early_stop_free_space of its points is not searched around (the global proposals and their
    # turns cost ~0.5 s a frame on 2 CPU cores); its turns are still probed for ambiguity. None: always search
    early_stop_score: float | None = 0.9
    early_stop_free_space: float = 0.05
    mirror_completion: bool = False  # one-view demo with the vertical known: complete the demo cloud with its
    # reflection about the object's vertical mirror plane when the demo view shows strong evidence of one
    # (:mod:`correspondence.mirror_symmetry`), so the side a turned live camera sees is scored too. Off: measured,
    # it lowered success at +-30 deg (92.5 -> 85.0 %) and at +-180 deg (53.1 -> 46.9 %; docs/pose_search.md)


@dataclass(frozen=True)
class PoseScore:
    agreement: float  # share of moved demo points on the live surface
    coverage: float  # share of live object points with a moved demo point within surface_m
    free_space: float  # share of in-frame moved points that contradict the live depth or silhouette
    appearance: float | None  # descriptor cosine of the pose's pairs minus that of shuffled pairs (None: none)
    score: float
    color_mismatch: float | None = None  # share of in-frame moved points on the surface in another colour
    support: float = 0.0  # the score with each contradiction weighed like one agreeing point (the early stop's)

    def as_dict(self) -> dict:
        return {"agreement": self.agreement, "coverage": self.coverage, "free_space": self.free_space,
                "color_mismatch": self.color_mismatch, "appearance": self.appearance, "score": self.score}


@dataclass(frozen=True)
class Hypothesis:
    source: str  # matches | fpfh-ransac | fgr
    transform: np.ndarray  # demo camera -> live camera (after ICP when refined)
    score: PoseScore
    refinement: IcpResult | None = None

    def as_dict(self) -> dict:
        return {"source": self.source, "transform": self.transform.tolist(), **self.score.as_dict(),
                "icp": None if self.refinement is None else self.refinement.as_dict()}


@dataclass(frozen=True)
class PoseSearchResult:
    transform: np.ndarray | None  # the chosen pose; None when nothing scored or the turn is ambiguous
    chosen: Hypothesis | None
    hypotheses: tuple[Hypothesis, ...] = field(default=())  # every scored candidate, best first
    ambiguous: bool = False
    reason: str = "ok"
    equivalent: tuple[Hypothesis, ...] = field(default=())  # rivals that put the surface where the chosen pose does
    appearance_agreement: float | None = None  # one-view demo: the chosen pose's appearance agreement
    # (:mod:`correspondence.pose_confirmation`; None: not judged)
    unconfirmed: bool = False  # refused: the pose is a guess by shape alone (no pose; ``reason`` says why)
    view_change_deg: float | None = None  # one-view demo: the view change the chosen pose claims (the same module)
    rivals: tuple[Hypothesis, ...] = field(default=())  # ambiguous: the turns that explained the frame as well (the
    # first is the one ``reason`` names): to judge a refusal, the bench measures them and ``chosen`` on the truth
    fused_check: dict | None = None  # multi-view demo: the chosen pose's contradiction values on the fused cloud
    # (:mod:`correspondence.multiview_confirmation`; None: not judged)
    view_poses: tuple = field(default=())  # multi-view demo: (label, primary -> live pose, fused score or None) of
    # each candidate view's searched pose, the pooled choice and a rival, for the bench to judge on the truth

    @property
    def refinement(self) -> IcpResult | None:
        return None if self.chosen is None else self.chosen.refinement
