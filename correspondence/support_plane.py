"""The table under the objects: find the frame's support plane once and take it out of the depth.

Why: a real RGB-D or stereo camera sees the table the objects stand on. The depth mask source's components
(:class:`~correspondence.depth_mask.DepthForeground`: neighbours whose depths differ by less than a step are one
surface), localisation's depth candidates and rule 6's height / footprint (:mod:`~correspondence.object_signature`)
all see an object standing on a table as one surface with the table: there is no depth step where it touches. With
the table's pixels made holes, each object is a surface of its own again.

Rule (one frame, metric depth and intrinsics):

1. Every valid pixel is lifted to the camera frame; a fixed-seed sample of them (``max_samples``) feeds a RANSAC of
   ``iterations`` three-point planes scored by their truncated squared distances (MSAC) with ``ransac_threshold``
   (metres, or ``ransac_relative`` of the median depth when larger). With the vertical ``up`` (a robot has it from TF), only planes whose normal lies within
   ``max_tilt_deg`` of it are tried (a table is level; a box's side is not); without it, the largest plane.
2. The best plane is refitted by least squares to the pixels within its band (3), until they no longer change
   (at most ``refits`` times); its normal is turned
   towards the camera (the camera looks at the table's top side), and every pixel's *height* above it is
   ``n . p + d``.
3. The band: the height spread of the pixels within the threshold is the depth noise where the table is;
   ``band_sigmas`` robust standard deviations (1.4826 x MAD) of it, clipped to ``[min_band, max_band]``. 3 sigma keeps 99.7 % of the table's pixels
   out of the objects; ``min_band`` (3 mm) covers noise-free synthetic depth and a plane fitted with a slight tilt
   over the frame; ``max_band`` (1.5 cm) keeps a noisy far table from eating the objects' lower parts.
4. It is the *support* plane only when (a) its band's pixels cover at least ``min_area`` of the frame (a table
   spreads under and around the objects: 45-57 % of the frame in the benches' table scenes, 47-94 % in UMD-i's real
   crops, while the largest plane of a table-free synthetic frame, a box's face, covers at most 15 %) and (b) at
   most ``max_behind`` of the valid pixels lie *just* beyond it (between the band and ``gap`` on the side away from
   the camera): a box's side continues from its face's edge, while the floor past a table's edge (UMD-i's board on
   the floor: up to half of the crop, 10-15 cm lower, at most 4.3 % just beyond) lies a table's height away. A plane
   that fails is left out and the next largest among the other pixels is tried (up to ``planes``): a big box's top
   seen close can be the largest level plane (a bus's roof in one bench scene: 28 % of the frame, 9.3 % just beyond).
   When none passes, no plane is found and nothing is removed.
5. Removed: every valid pixel whose height is at most the band (the table, and the floor past its edge, below it).

A frame without a table (the procedural scenes without ``table``) comes out exactly as it went in.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .camera import CameraIntrinsics
from .errors import ConfigError, InputError


@dataclass(frozen=True)
class SupportPlaneSettings:
    """See the module doc for each value's role; the defaults are discussed in docs/live_object.md. No off-switch of
    its own: ``PipelineSettings(support_plane=None)`` is the one way to turn the removal off (the node's
    ``support_plane: false`` and ``soco bench alignment --no-support-plane`` set exactly that)."""

    max_tilt_deg: float = 10.0
    min_area: float = 0.25
    max_behind: float = 0.05
    gap: float = 0.03
    planes: int = 3
    ransac_threshold: float = 0.005
    ransac_relative: float = 0.01
    iterations: int = 256
    refits: int = 10
    max_samples: int = 8000
    band_sigmas: float = 3.0
    min_band: float = 0.003
    max_band: float = 0.015
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.max_tilt_deg < 90:
            raise ConfigError(f"max_tilt_deg must be in (0, 90) degrees, got {self.max_tilt_deg}")
        if not (0 < self.min_area <= 1 and 0 <= self.max_behind < 1):
            raise ConfigError(f"min_area must be in (0, 1] and max_behind in [0, 1), got {self.min_area}, "
                              f"{self.max_behind}")
        if not (self.ransac_threshold > 0 and self.ransac_relative >= 0 and self.band_sigmas > 0 and self.gap > 0):
            raise ConfigError("ransac_threshold, band_sigmas and gap must be > 0 and ransac_relative >= 0")
        if not 0 < self.min_band <= self.max_band:
            raise ConfigError(f"the band must satisfy 0 < min_band <= max_band, got {self.min_band}, {self.max_band}")
        if self.iterations < 1 or self.max_samples < 3 or self.refits < 0 or self.planes < 1:
            raise ConfigError(f"iterations must be >= 1 and max_samples >= 3, got {self.iterations}, "
                              f"{self.max_samples}")


@dataclass(frozen=True, eq=False)
class SupportPlane:
    """One frame's support plane. ``found`` False: ``removed`` is all False and ``height`` None (nothing to
    measure from). Plane: ``normal . p + offset = 0`` in the camera frame, ``normal`` towards the camera."""

    found: bool
    reason: str  # why it was accepted or not, with the figures
    removed: np.ndarray  # (H, W) bool: the pixels at or below the plane's band (the table)
    normal: np.ndarray | None = None  # (3,) unit
    offset: float = float("nan")  # metres: the camera's height above the plane
    band: float = float("nan")  # metres above the plane still counted as the table
    noise: float = float("nan")  # metres: the robust standard deviation of the inliers' heights
    height: np.ndarray | None = None  # (H, W) metres above the plane, NaN where no depth
    area: float = 0.0  # share of the frame within the band
    behind: float = 0.0  # share of the valid pixels just beyond the plane (between the band and ``gap``)

    def without_plane(self, depth: np.ndarray) -> np.ndarray:
        """``depth`` with the plane's pixels made holes (0); ``depth`` itself when no plane was found."""
        if not self.found or not self.removed.any():
            return depth
        return np.where(self.removed, np.zeros((), dtype=depth.dtype), depth)

    def as_dict(self) -> dict:
        record = {"found": self.found, "reason": self.reason, "removed_px": int(self.removed.sum()),
                  "area": round(self.area, 4), "behind": round(self.behind, 4)}
        if self.found:
            record.update(normal=[round(float(v), 5) for v in self.normal], offset_m=round(self.offset, 5),
                          band_m=round(self.band, 5), noise_m=round(self.noise, 5))
        return record


def find_support_plane(depth: np.ndarray, intrinsics: CameraIntrinsics, up: np.ndarray | None = None,
                       settings: SupportPlaneSettings | None = None) -> SupportPlane:
    """The support plane of one frame (module doc). ``depth``: metres (0 / NaN = no reading); ``up``: the vertical
    in this camera's frame, when known."""
    settings = SupportPlaneSettings() if settings is None else settings
    depth = np.asarray(depth)
    if depth.ndim != 2 or depth.shape != (intrinsics.height, intrinsics.width):
        raise InputError(f"support plane: depth {depth.shape} does not match the intrinsics' "
                         f"{intrinsics.height}x{intrinsics.width}")
    z = depth.astype(np.float64)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(z) & (z > 0)
    none = np.zeros(depth.shape, dtype=bool)
    frame = float(depth.size)
    n_valid = int(valid.sum())
    if n_valid < settings.min_area * frame:
        return SupportPlane(False, f"no plane: {n_valid / frame:.1%} of the frame has depth, less than "
                                   f"min_area {settings.min_area:.0%}", none)
    points = _pixel_rays(intrinsics)[valid] * z[valid][:, None]
    up_unit = None
    if up is not None:
        up_unit = np.asarray(up, dtype=np.float64).reshape(3)
        if not (np.isfinite(up_unit).all() and np.linalg.norm(up_unit) > 1e-9):
            raise InputError(f"support plane: up must be a finite non-zero 3-vector, got {up}")
        up_unit = up_unit / np.linalg.norm(up_unit)
    threshold = max(settings.ransac_threshold, settings.ransac_relative * float(np.median(points[:, 2])))
    rng = np.random.default_rng(settings.seed)
    pool = np.ones(len(points), dtype=bool)  # the pixels a next plane may come from
    reasons = []
    for _ in range(settings.planes):  # the largest plane first; when it is not a support (a big box's top seen
        # close), the next largest among the pixels off it
        candidate = _plane(points, pool, rng, threshold, settings, up_unit)
        if isinstance(candidate, str):
            reasons.append(candidate)
            break
        normal, offset, heights, noise, band = candidate
        area = float((np.abs(heights) <= band).sum()) / frame
        behind = float(((heights < -band) & (heights >= -settings.gap)).sum()) / n_valid
        figures = (f"{area:.1%} of the frame within {1000 * band:.1f} mm of it, {behind:.1%} of the depth less than "
                   f"{100 * settings.gap:g} cm beyond it, noise {1000 * noise:.1f} mm")
        if area >= settings.min_area and behind <= settings.max_behind:
            removed = none.copy()
            removed[valid] = heights <= band
            height = np.full(depth.shape, np.nan)
            height[valid] = heights
            return SupportPlane(True, f"support plane: {figures}", removed, normal, float(offset), band, noise,
                                height, area, behind)
        reasons.append(f"{figures}")
        pool &= np.abs(heights) > max(band, threshold)
        if pool.sum() < settings.min_area * frame:
            break
    first = reasons[0] if reasons else "none"
    more = f"; {len(reasons) - 1} smaller one(s) neither" if len(reasons) > 1 else ""
    return SupportPlane(False, f"no support plane: the largest plane has {first} (needs >= {settings.min_area:.0%} "
                               f"and <= {settings.max_behind:.0%}){more}", none)


def _plane(points: np.ndarray, pool: np.ndarray, rng: np.random.Generator, threshold: float,
           settings: SupportPlaneSettings, up: np.ndarray | None):
    """The best plane among the ``pool`` pixels (RANSAC, then refits), as (normal towards the camera, offset, every
    pixel's height, noise, band); or why there is none. The RANSAC, the refits and the noise use the fixed-seed sample
    of ``max_samples`` pixels; only the final heights cover every pixel (the refits on every pixel cost 80 % of the
    frame's ~120-300 ms: a median and an SVD over ~10^5 points per refit; 8000 points fix a plane's tilt to
    ~0.01 deg and its noise to ~1 %)."""
    index = np.flatnonzero(pool)
    if len(index) > settings.max_samples:
        index = index[rng.choice(len(index), settings.max_samples, replace=False)]
    sample = points[index]
    plane = _ransac(sample, rng, threshold, settings, up)
    if plane is None:
        where = f"within {settings.max_tilt_deg:g} deg of the vertical" if up is not None else "at all"
        return f"no plane {where} holds 3 points"
    normal, offset = plane
    heights = sample @ normal + offset
    core = None
    for _ in range(settings.refits):  # the noise, then a least-squares refit to the pixels within its band, until
        # the band holds the same pixels: the RANSAC plane comes from three noisy points, and a surface just beside
        # the table (a box's side) within the coarse threshold can tilt it; each refit narrows the band onto the table
        centre, noise, band = _band(heights[np.abs(heights) <= threshold], settings)
        inside = np.abs(heights - centre) <= max(band, 3.0 * noise)  # about the table's own level: the plane may
        # sit off it by up to the threshold
        if inside.sum() < 3 or (core is not None and np.array_equal(inside, core)):
            break
        core = inside
        normal, offset = _fit(sample[core])
        heights = sample @ normal + offset
    _, noise, band = _band(heights[np.abs(heights) <= threshold], settings)
    if offset < 0:  # towards the camera: the camera (origin) is above the table
        normal, offset = -normal, -offset
    if up is not None and float(normal @ up) < np.cos(np.radians(settings.max_tilt_deg)):
        return (f"the largest level plane is seen from below or tilts "
                f"{np.degrees(np.arccos(np.clip(normal @ up, -1, 1))):.1f} deg from the vertical")
    return normal, float(offset), points @ normal + offset, noise, band


@lru_cache(maxsize=4)
def _pixel_rays(intrinsics: CameraIntrinsics) -> np.ndarray:
    """The camera's pixel rays, once per camera (a stream's frames share it; 10-15 ms a 448 x 448 frame)."""
    rays = intrinsics.pixel_rays()
    rays.flags.writeable = False
    return rays


def _band(near: np.ndarray, settings: SupportPlaneSettings) -> tuple[float, float, float]:
    """The median and robust standard deviation (1.4826 x MAD) of the heights ``near`` the plane, and the band."""
    if not near.size:
        return 0.0, 0.0, settings.min_band
    centre = float(np.median(near))
    noise = 1.4826 * float(np.median(np.abs(near - centre)))
    return centre, noise, float(np.clip(settings.band_sigmas * noise, settings.min_band, settings.max_band))


def _fit(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares plane (unit normal, offset) through ``points``."""
    centre = points.mean(0)
    normal = np.linalg.svd(points - centre, full_matrices=False)[2][-1]
    return normal, float(-normal @ centre)


def _ransac(points: np.ndarray, rng: np.random.Generator, threshold: float, settings: SupportPlaneSettings,
            up: np.ndarray | None) -> tuple[np.ndarray, float] | None:
    """The three-point plane of least truncated squared distance to ``points`` (MSAC: a plane tilted to catch a
    surface beside the table within the threshold pays for its spread on the table); with ``up``, only near-level
    ones."""
    triples = points[rng.integers(0, len(points), (settings.iterations, 3))]
    normals = np.cross(triples[:, 1] - triples[:, 0], triples[:, 2] - triples[:, 0])
    length = np.linalg.norm(normals, axis=1)
    keep = length > 1e-12
    normals = normals[keep] / length[keep, None]
    triples = triples[keep]
    if up is not None:
        keep = np.abs(normals @ up) >= np.cos(np.radians(settings.max_tilt_deg))
        normals, triples = normals[keep], triples[keep]
    if not len(normals):
        return None
    offsets = -np.einsum("ij,ij->i", normals, triples[:, 0])
    costs = np.zeros(len(normals))
    for start in range(0, len(normals), 32):  # (S, 32) residuals at a time: bounded memory
        block = slice(start, start + 32)
        costs[block] = np.minimum((points @ normals[block].T + offsets[block]) ** 2, threshold ** 2).sum(0)
    best = int(np.argmin(costs))
    return normals[best], float(offsets[best])


__all__ = ["SupportPlane", "SupportPlaneSettings", "find_support_plane"]
