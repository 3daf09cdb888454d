"""The per-frame pipeline's settings and its result (:mod:`correspondence.pipeline`), apart from the pipeline's
code so that callers, reports and the node can name them without the per-frame machinery."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .alignment import Alignment2DResult, AlignmentResult
from .dense_transfer import DenseMatches, DenseSettings
from .errors import ConfigError
from .icp import IcpResult, IcpSettings
from .keypoint_matching import KeypointMatch
from .localise import Localisation, LocaliseSettings
from .mask_completion import CompletionSettings
from .object_signature import SignatureSettings
from .mask_types import MaskResult
from .pose_confirmation import ConfirmationSettings
from .multiview_confirmation import FusedConfirmationSettings
from .pose_keypoints import KeypointPose, KeypointPoseSettings
from .pose_search import PoseSearchResult, PoseSearchSettings
from .support_plane import SupportPlane, SupportPlaneSettings
from .tracking import TrackSettings
from .view_schedule import ViewScheduleSettings

ALIGNMENT_SOURCES = ("dense", "keypoints")


@dataclass(frozen=True)
class PipelineSettings:
    min_score: float | None = None  # reject keypoint matches with a lower cosine score
    require_mutual: bool = False  # reject keypoint matches that are not mutual nearest neighbours
    max_cycle_px: float | None = None  # reject keypoint matches whose cycle distance (demo px) is larger
    depth_range: tuple[float, float] = (0.05, 5.0)
    depth_scale: float = 1.0  # metres per live depth unit (0.001 for uint16 millimetres)
    ransac_threshold: float = 0.015  # metres
    ransac_iterations: int = 1000
    min_inliers: int = 4
    solver: str = "ransac"  # ransac | open3d
    pixel_threshold: float = 8.0  # 2D similarity inlier threshold (px)
    alignment_source: str = "dense"  # dense | keypoints (keypoint mode only; functional mode is always dense)
    dense: DenseSettings = field(default_factory=DenseSettings)
    refine: str = "icp"  # icp | none: guarded point-to-plane ICP of the demo object's cloud onto the live one
    icp: IcpSettings = field(default_factory=IcpSettings)
    pose_search: PoseSearchSettings = field(default_factory=PoseSearchSettings)  # global hypotheses (keypoint demos)
    confirmation: ConfirmationSettings = field(default_factory=ConfirmationSettings)  # one-view demo: refuse a
    # pose the live view's appearance does not confirm (:mod:`correspondence.pose_confirmation`)
    multiview_cloud: str = "view"  # multi-view demo: the pose search's demo cloud, the chosen view's | all fused
    multiview_pool: bool = True  # multi-view demo: the view choice pools each candidate view's best hypotheses,
    # fitted and scored on the fused cloud (view_pool.py); False: each view's searched pose alone
    multiview_handle: bool = True  # multi-view demo of a round body with a handle or spout: the chosen pose's turn
    # about the body's axis read again from that part (handle_turn.py); False: the pooled choice as it is
    one_view_handle: bool = True  # one-view demo of a round body whose handle or spout both views show: the pose
    # search's choice read again from that part, and rivals that lay it clearly worse dismissed (one_view_handle.py)
    fused_confirmation: FusedConfirmationSettings = field(default_factory=FusedConfirmationSettings)  # multi-view
    # demo: refuse a chosen pose that contradicts the live frame on the fused cloud (multiview_confirmation.py)
    keypoint_pose: KeypointPoseSettings = field(default_factory=KeypointPoseSettings)  # keypoints from the 3D pose
    localise: LocaliseSettings = field(default_factory=LocaliseSettings)  # find the demo object before segmenting
    # localisation's rule 6 when the vertical is given (up=): the demo object's height, footprint and colours
    signature: SignatureSettings | None = field(default_factory=SignatureSettings)
    # the table under the objects taken out of the live depth once per frame, before segmentation, localisation,
    # rule 6 and the live cloud (:mod:`correspondence.support_plane`); a frame without one is left as it is. None:
    # off (the only off-switch: the node's support_plane false and the bench's --no-support-plane set it), for the
    # live frames and a mask-less demo's own depth foreground alike
    support_plane: SupportPlaneSettings | None = field(default_factory=SupportPlaneSettings)
    # a depth mask completed with the touching depth surfaces that keep it within the demo object's height, footprint
    # and colours (:mod:`correspondence.mask_completion`: a chair's back in front of its seat, stool legs a stereo
    # camera cut off); used with the vertical (up=). None: off (the node's mask_completion false, the bench's
    # --no-mask-completion)
    mask_completion: CompletionSettings | None = field(default_factory=CompletionSettings)
    track: TrackSettings | None = None  # a stream: carry the mask between frames, segment again only when needed
    view_schedule: ViewScheduleSettings | None = field(default_factory=ViewScheduleSettings)  # multi-view demo on a
    # stream: the last pose's view localises first, the others only when it is not clearly confirmed (None: all views)

    def __post_init__(self) -> None:
        if self.alignment_source not in ALIGNMENT_SOURCES:
            raise ConfigError(f"alignment_source must be one of {ALIGNMENT_SOURCES}, got {self.alignment_source!r}")
        if self.multiview_cloud not in ("view", "fused"):
            raise ConfigError(f"multiview_cloud must be 'view' or 'fused', got {self.multiview_cloud!r}")
        if self.refine not in ("icp", "none"):
            raise ConfigError(f"refine must be 'icp' or 'none', got {self.refine!r}")
        if not (np.isfinite(self.depth_scale) and self.depth_scale > 0):
            raise ConfigError(f"depth_scale must be a positive number of metres per depth unit, got {self.depth_scale}")
        if not (np.isfinite(self.ransac_threshold) and self.ransac_threshold > 0):
            raise ConfigError(f"ransac_threshold must be a positive distance in metres, got {self.ransac_threshold}")

    def as_dict(self) -> dict:
        from dataclasses import asdict
        return asdict(self)


@dataclass(frozen=True)
class FrameResult:
    mode: str  # keypoints | functional
    matches: tuple[KeypointMatch, ...]  # keypoint mode: one per demo keypoint; functional mode: empty
    accepted: np.ndarray  # (K,) bool, after the rejection rules
    demo_points: np.ndarray  # (K, 3) demo camera frame, NaN where not lifted
    live_points: np.ndarray  # (K, 3) live camera frame, NaN where not lifted or without live depth
    alignment: AlignmentResult | None  # 3D, when demo and live depth + intrinsics exist
    alignment_2d: Alignment2DResult | None  # otherwise
    mask: MaskResult | None
    timings_s: dict[str, float] = field(default_factory=dict)
    dense: DenseMatches | None = None  # functional matches, or the dense matches that drove the alignment
    alignment_source: str = "keypoints"  # which correspondences the alignment used: keypoints | dense
    refinement: IcpResult | None = None  # the ICP step, when it ran (accepted or not, with its reason)
    dense_live_points: np.ndarray | None = None  # (N, 3) live camera frame per dense match, NaN where not lifted
    keypoint_geometry: Any = None  # the 2D model the keypoint matches were verified against (GeometryResult), if any
    pose_search: PoseSearchResult | None = None  # the scored pose hypotheses behind the refined pose, when it ran
    pose_keypoints: tuple[KeypointPose, ...] | None = None  # per keypoint: the pose's prediction, visibility, flag
    localisation: Localisation | None = None  # where the demo object was found before segmentation (candidates, choice)
    demo_view: int | None = None  # multi-view demo: the view whose matches gave the pose (0 = primary); else None
    demo_view_scores: dict[int, float] | None = None  # multi-view demo: each candidate view's pose score (the pose
    # search's score against the live frame; the best was chosen), None when none was scored
    support_plane: SupportPlane | None = None  # the live frame's table, taken out of its depth (None: not looked for)

    @property
    def success(self) -> bool:
        result = self.alignment if self.alignment is not None else self.alignment_2d
        return bool(result is not None and result.success)
