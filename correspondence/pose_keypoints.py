"""Keypoints that agree with the pose: once a 3D pose of the same object is accepted, each demo keypoint's 3D point
moved through it and projected (with the camera's distortion) is where the keypoint is in the live frame.

Why: a keypoint's own match is one patch comparison, easily fooled by a look-alike part (a car's rear-right
wheel matched to its front-left one), while the pose rests on hundreds of dense matches and the two depth
clouds. So with a pose the published position is the pose's prediction (``position="pose"``), its visibility is
checked against the live depth (a point behind the seen surface, by more than ``max(min_m, fraction * depth)``, is
hidden: ``position="pose-hidden"``; on a silhouette, where the pixel shows the backdrop, the surfaces beside it
judge), and a keypoint whose own match lies more than ``max_px`` from the prediction
is flagged (``KeypointPose.disagrees``): the match, not the pose, is the suspect. Each demo keypoint's 3D point is
read once from the demo depth at its sub-pixel position (:func:`surface_points`): turned by up to 180 deg, its depth
error becomes a lateral one in the live frame.
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
    edge_px: int = 2  # no depth under the point (the backdrop beside a silhouette): the surfaces this near judge it


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


@dataclass(frozen=True)
class SurfaceSettings:
    """How a demo keypoint's depth is read (:func:`surface_points`)."""

    candidate_px: float = 1.5  # object pixels (centres) this close to the keypoint each propose a surface
    jump_m: float = 0.03  # a neighbour this much nearer / farther is another surface (a depth edge)


def surface_points(xy: np.ndarray, depth: np.ndarray, intrinsics: CameraIntrinsics, mask: np.ndarray | None,
                   depth_range: tuple[float, float], radius: int = 4, settings: SurfaceSettings | None = None
                   ) -> np.ndarray:
    """Demo keypoints -> 3D points (demo camera), NaN where none, on the surface the keypoint's ray meets.

    A keypoint sits between pixel centres, often on a steep or silhouette surface (a wheel's edge, a mug's rim):
    one pixel's depth there is millimetres to centimetres off (a 23 mm/px slope on a bus's tyre), and turned by
    90 deg in the live view a depth error becomes the same lateral error, several px. So each object pixel within
    ``settings.candidate_px`` of the keypoint fits a plane (depth over the image) to its 3 x 3 neighbours on the
    same surface (depth within ``settings.jump_m``), read at the keypoint's sub-pixel position and clamped to
    that neighbourhood's depths widened by their spread; of these the front-most wins (at a depth edge the
    keypoint is on the occluding side: the far pixel only shows the surface behind it). No object pixel that
    near (a stereo camera drops the pixels beside a depth edge and leaves holes of a few px): the object pixels within
    ``candidate_px`` of the nearest one within ``radius`` px, each read by its plane at the keypoint, front-most
    first, as above."""
    s = settings or SurfaceSettings()
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(depth) & (depth >= depth_range[0]) & (depth <= depth_range[1]) & (depth > 0)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    out = np.full((len(xy), 3), np.nan)
    for i, (x, y) in enumerate(xy):
        if not np.isfinite([x, y]).all():
            continue
        z = _surface_depth(x, y, depth, valid, radius, s)
        if z is not None:
            out[i] = intrinsics.unproject(np.array([x, y]), np.array(z))
    return out


def _surface_depth(x: float, y: float, depth: np.ndarray, valid: np.ndarray, radius: int,
                   s: SurfaceSettings) -> float | None:
    """The depth (z) of the surface at sub-pixel ``(x, y)``, or None with no object pixel within ``radius``."""
    c0, r0 = int(np.floor(x)), int(np.floor(y))
    top, left = max(r0 - radius, 0), max(c0 - radius, 0)
    rows, cols = np.nonzero(valid[top:r0 + radius + 1, left:c0 + radius + 1])
    if not len(rows):
        return None
    rows, cols = rows + top, cols + left
    distance = np.hypot(rows + 0.5 - y, cols + 0.5 - x)
    near = distance <= s.candidate_px
    own = 0 <= r0 < valid.shape[0] and 0 <= c0 < valid.shape[1] and bool(valid[r0, c0])
    if not own:  # no depth under the keypoint (a stereo camera's dropped edge band, a hole, the backdrop beside a
        # silhouette): every surface on the rim of the gap proposes and the front-most wins, as above (a roof corner
        # in the band between a near and a far face: the nearer pixel alone took the far face, 8 cm off)
        near = distance <= distance.min() + s.candidate_px
    elif not near.any():
        near = distance == distance.min()
    depths = []
    for r, c in zip(rows[near], cols[near]):
        r_lo, c_lo = max(r - 1, 0), max(c - 1, 0)
        patch, ok = depth[r_lo:r + 2, c_lo:c + 2].astype(np.float64), valid[r_lo:r + 2, c_lo:c + 2]
        ok = ok & (np.abs(patch - depth[r, c]) < s.jump_m)
        pr, pc = np.nonzero(ok)
        d = patch[ok]
        if len(d) < 3:
            depths.append(float(depth[r, c]))
            continue
        A = np.stack([np.ones(len(d)), pc + c_lo + 0.5 - x, pr + r_lo + 0.5 - y], 1)
        fitted = float(np.linalg.lstsq(A, d, rcond=None)[0][0])  # the plane at the keypoint (collinear: min-norm)
        spread = float(d.max() - d.min())
        depths.append(float(np.clip(fitted, d.min() - spread, d.max() + spread)))
    return front_surface(depths, s.jump_m)


def front_surface(depths: list[float], jump_m: float) -> float:
    """The front-most surface's depth among candidate readings: the median of those within ``jump_m`` of the
    nearest. Why not the nearest alone: on noisy depth (a stereo camera's ~1-3 mm, more on a steep face) the least of
    several readings of one surface is biased towards the camera by about two of its noise sigmas, and a keypoint on
    the rim of a gap is read by every rim pixel: on the bench's stereo frames the nearest put keypoints 4-30 mm in
    front of their surface (5-18 px once the object turned). The median of the front surface's readings keeps the
    rule (a far face behind a depth edge, > ``jump_m`` back, never votes) without the bias."""
    depths = np.asarray(depths, dtype=np.float64)
    front = depths[depths <= depths.min() + jump_m]
    return float(np.median(front))


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
        visibility.append(_visibility(z[i], depth, int(xy[i, 0]), int(xy[i, 1]), settings))
    return xy, z, visibility


def _visibility(z: float, depth: np.ndarray, col: int, row: int, s: KeypointPoseSettings) -> str:
    """hidden: the seen surface is in front of the point by more than the tolerance. A point on the object's
    silhouette often projects onto the backdrop, where the depth is missing or out of range (a keypoint on a roof
    corner, a rim): then the surfaces within ``edge_px`` judge it, hidden only when all of them are in front."""
    tolerance = max(s.min_m, s.fraction * z)
    seen = float(depth[row, col])
    if np.isfinite(seen) and seen > 0:
        return "hidden" if z > seen + tolerance else "visible"
    r = s.edge_px
    window = np.asarray(depth[max(row - r, 0):row + r + 1, max(col - r, 0):col + r + 1], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        near = window[np.isfinite(window) & (window > 0)]
    if not len(near):
        return "no live depth"
    return "hidden" if (z > near + tolerance).all() else "visible"


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
