"""Keypoints that agree with the pose: once a 3D pose of the same object is accepted, each demo keypoint's 3D point
moved through it and projected (with the camera's distortion) is where the keypoint is in the live frame.

Why: a keypoint's own match is one patch comparison, easily fooled by a look-alike part (a car's rear-right
wheel matched to its front-left one), while the pose rests on hundreds of dense matches and the two depth
clouds. So with a pose the published position is the pose's prediction (``position="pose"``), its visibility is
checked against the live depth (a point behind the seen surface, by more than ``max(min_m, fraction * depth)``, is
hidden: ``position="pose-hidden"``), and a keypoint whose own match lies more than ``max_px`` from the prediction
is flagged (``KeypointPose.disagrees``): the match, not the pose, is the suspect.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .camera import CameraIntrinsics

POSITION_POSE, POSITION_POSE_HIDDEN = "pose", "pose-hidden"


@dataclass(frozen=True)
class KeypointPoseSettings:
    enabled: bool = True
    max_px: float = 10.0  # a match farther than this from the pose's prediction disagrees with the pose
    min_m: float = 0.01  # visibility: the predicted depth may exceed the seen depth by max(min_m, fraction * z)
    fraction: float = 0.02


@dataclass(frozen=True)
class KeypointPose:
    """One demo keypoint as the pose predicts it in the live frame."""

    name: str
    xy: tuple[float, float] | None  # live pixel (None: no demo depth at the keypoint, or behind the camera)
    depth_m: float | None  # predicted depth (z) in the live camera
    visibility: str  # visible | hidden | out of frame | no live depth | no demo depth
    matched_xy: tuple[float, float]  # the keypoint's own match
    match_error_px: float | None  # distance from the match to the prediction
    disagrees: bool  # the match lies more than max_px from the prediction

    @property
    def visible(self) -> bool:
        return self.visibility == "visible"

    def as_dict(self) -> dict:
        return {"name": self.name, "xy": self.xy, "depth_m": self.depth_m, "visibility": self.visibility,
                "matched_xy": self.matched_xy, "match_error_px": self.match_error_px, "disagrees": self.disagrees}


def surface_points(xy: np.ndarray, depth: np.ndarray, intrinsics: CameraIntrinsics, mask: np.ndarray | None,
                   depth_range: tuple[float, float], radius: int = 4) -> np.ndarray:
    """Demo keypoints -> 3D points (demo camera), NaN where none: the nearest object pixel with valid depth within
    ``radius`` px gives the depth. A keypoint on a silhouette (a wheel's edge) has half its neighbourhood on the
    background, where the robust lifting of the matches refuses it; the nearest object pixel still lies on it."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    h, w = depth.shape
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(depth) & (depth >= depth_range[0]) & (depth <= depth_range[1]) & (depth > 0)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    out = np.full((len(xy), 3), np.nan)
    for i, (x, y) in enumerate(xy):
        if not np.isfinite([x, y]).all():
            continue
        c0, r0 = int(np.floor(x)), int(np.floor(y))
        rows, cols = np.nonzero(valid[max(r0 - radius, 0):r0 + radius + 1, max(c0 - radius, 0):c0 + radius + 1])
        if not len(rows):
            continue
        rows, cols = rows + max(r0 - radius, 0), cols + max(c0 - radius, 0)
        k = int(np.argmin((rows + 0.5 - y) ** 2 + (cols + 0.5 - x) ** 2))
        out[i] = intrinsics.unproject(np.array([x, y]), np.array(float(depth[rows[k], cols[k]])))
    return out


def predict(demo_points: np.ndarray, transform: np.ndarray, depth: np.ndarray, intrinsics: CameraIntrinsics,
            settings: KeypointPoseSettings) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Predicted live pixels ``(K, 2)`` (NaN without a demo point), depths ``(K,)`` and visibilities."""
    points = np.asarray(demo_points, dtype=np.float64).reshape(-1, 3)
    moved = points @ transform[:3, :3].T + transform[:3, 3]
    z = moved[:, 2]
    known = np.isfinite(moved).all(1) & (z > 1e-3)
    xy = np.full((len(points), 2), np.nan)
    xy[known] = intrinsics.project(moved[known])
    h, w = depth.shape
    visibility = []
    for i in range(len(points)):
        if not np.isfinite(points[i]).all():
            visibility.append("no demo depth")
            continue
        if not known[i] or not (0 <= xy[i, 0] < w and 0 <= xy[i, 1] < h):
            visibility.append("out of frame")
            continue
        seen = float(depth[int(xy[i, 1]), int(xy[i, 0])])
        if not (np.isfinite(seen) and seen > 0):
            visibility.append("no live depth")
        elif z[i] > seen + max(settings.min_m, settings.fraction * z[i]):
            visibility.append("hidden")
        else:
            visibility.append("visible")
    return xy, z, visibility


def keypoints_from_pose(matches, demo_points: np.ndarray, transform: np.ndarray, depth: np.ndarray,
                        intrinsics: CameraIntrinsics, settings: KeypointPoseSettings | None = None):
    """(matches with pose positions where the pose predicts one, one :class:`KeypointPose` per match)."""
    s = settings or KeypointPoseSettings()
    xy, z, visibility = predict(demo_points, transform, depth, intrinsics, s)
    updated, poses = [], []
    for match, p, depth_m, seen in zip(matches, xy, z, visibility):
        matched = tuple(float(v) for v in match.live_xy)
        if not np.isfinite(p).all() or seen == "out of frame":
            poses.append(KeypointPose(match.name, None if not np.isfinite(p).all() else (float(p[0]), float(p[1])),
                                      float(depth_m) if np.isfinite(depth_m) else None, seen, matched, None, False))
            updated.append(match)
            continue
        error = float(np.hypot(*(np.asarray(matched) - p)))
        poses.append(KeypointPose(match.name, (float(p[0]), float(p[1])), float(depth_m), seen, matched, error,
                                  error > s.max_px))
        position = POSITION_POSE_HIDDEN if seen == "hidden" else POSITION_POSE
        updated.append(replace(match, live_xy=(float(p[0]), float(p[1])), position=position))
    return tuple(updated), tuple(poses)
