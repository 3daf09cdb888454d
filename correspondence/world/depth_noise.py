"""Depth as a stereo camera gives it, from the renderer's exact depth: what the pipeline meets on a robot.

The procedural world renders exact depth. An active stereo camera (a RealSense D4xx, a ZED, a Kinect-like
projector pair) measures disparity, not depth, and its errors follow from that:

* **disparity noise**: depth is ``f b / d``; a disparity error of ``sigma_px`` (sub-pixel matching: about 0.05-0.1
  px on a D435 with its projector) is a depth error of ``z^2 sigma_px / (f b)``, growing with the square of the
  distance. Block matching correlates neighbouring pixels, so the noise is smoothed over ``correlation_px``;
* **quantisation**: the driver publishes 16-bit depth in ``quantum_m`` steps (1 mm);
* **no depth at depth edges**: the two cameras see different sides of an occluding edge, so matching fails there
  and drivers drop the pixels ("flying pixels" filtered): pixels within ``edge_px`` of a jump larger than
  ``edge_jump_m`` are 0;
* **holes**: patches without texture or with specular highlights give no match: blobs covering ``hole_fraction``
  of the valid pixels are 0.

:func:`stereo_depth` applies the four; :data:`DEPTH_NOISE` names the presets ``soco bench alignment
--depth-noise`` takes. The truth a benchmark scores against (masks, keypoints, poses) is untouched.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..camera import CameraIntrinsics
from ..errors import ConfigError


@dataclass(frozen=True)
class StereoNoise:
    """An active stereo camera's depth errors (module doc); the defaults are a D435-like camera at close range."""

    baseline_m: float = 0.05  # distance between the two cameras
    sigma_px: float = 0.08  # disparity noise, pixels of the depth image
    correlation_px: float = 1.5  # the matching window's smoothing of that noise (Gaussian sigma, pixels)
    quantum_m: float = 0.001  # depth step of the published image
    edge_px: int = 1  # pixels dropped on each side of a depth jump
    edge_jump_m: float = 0.02  # a jump between neighbours larger than this is an occluding edge
    hole_fraction: float = 0.02  # share of the valid pixels lost in blobs
    hole_radius_px: tuple[int, int] = (2, 6)  # the blobs' radii, uniform

    def __post_init__(self) -> None:
        if self.baseline_m <= 0 or self.sigma_px < 0 or self.correlation_px < 0 or self.quantum_m < 0:
            raise ConfigError("stereo noise needs baseline_m > 0 and sigma_px, correlation_px, quantum_m >= 0")
        if self.edge_px < 0 or self.edge_jump_m <= 0 or not 0 <= self.hole_fraction < 1:
            raise ConfigError("stereo noise needs edge_px >= 0, edge_jump_m > 0 and hole_fraction in [0, 1)")
        if not 1 <= self.hole_radius_px[0] <= self.hole_radius_px[1]:
            raise ConfigError(f"hole_radius_px must be 1 <= low <= high, got {self.hole_radius_px}")


DEPTH_NOISE = {"none": None, "stereo": StereoNoise(),
               # a passive or long-baseline-less camera, or the far end of an active one's range
               "stereo-poor": StereoNoise(sigma_px=0.2, edge_px=2, hole_fraction=0.06)}


def depth_noise_from_name(name: str) -> StereoNoise | None:
    """A preset of :data:`DEPTH_NOISE` by name (None: exact depth)."""
    if name not in DEPTH_NOISE:
        raise ConfigError(f"unknown depth noise {name!r}; choose one of {', '.join(DEPTH_NOISE)}")
    return DEPTH_NOISE[name]


def _smoothed_unit_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Gaussian noise smoothed over ``sigma_px`` and scaled back to unit standard deviation."""
    noise = rng.standard_normal(shape)
    if sigma_px <= 0:
        return noise
    import cv2

    smooth = cv2.GaussianBlur(noise, (0, 0), sigma_px, borderType=cv2.BORDER_REFLECT)
    return smooth / max(float(smooth.std()), 1e-12)


def _edge_pixels(depth: np.ndarray, jump_m: float, width_px: int) -> np.ndarray:
    """Valid pixels within ``width_px`` of a jump larger than ``jump_m`` to a neighbour (or of a hole's border)."""
    import cv2

    valid = depth > 0
    padded = np.pad(np.where(valid, depth, np.inf), 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    edge = np.zeros(depth.shape, dtype=bool)
    for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
        neighbour = padded[1 + dy:padded.shape[0] - 1 + dy, 1 + dx:padded.shape[1] - 1 + dx]
        with np.errstate(invalid="ignore"):
            edge |= ~(np.abs(neighbour - centre) <= jump_m)  # inf - inf and a jump both count
    edge &= valid
    if width_px > 1:
        kernel = np.ones((2 * width_px - 1, 2 * width_px - 1), np.uint8)
        edge = cv2.dilate(edge.astype(np.uint8), kernel).astype(bool) & valid
    return edge if width_px > 0 else np.zeros_like(edge)


def _holes(rng: np.random.Generator, valid: np.ndarray, fraction: float, radii: tuple[int, int]) -> np.ndarray:
    """Blobs (discs) dropped on valid pixels until about ``fraction`` of them are gone."""
    import cv2

    holes = np.zeros(valid.shape, dtype=np.uint8)
    target = fraction * int(valid.sum())
    ys, xs = np.nonzero(valid)
    while len(ys) and int((holes.astype(bool) & valid).sum()) < target:
        k = int(rng.integers(len(ys)))
        cv2.circle(holes, (int(xs[k]), int(ys[k])), int(rng.integers(radii[0], radii[1] + 1)), 1, -1)
    return holes.astype(bool)


def stereo_depth(depth: np.ndarray, intrinsics: CameraIntrinsics, noise: StereoNoise,
                 rng: np.random.Generator) -> np.ndarray:
    """``depth`` (metres, 0 = none) as the stereo camera ``noise`` would publish it (module doc)."""
    depth = np.asarray(depth, dtype=np.float64)
    valid = depth > 0
    focal_baseline = intrinsics.fx * noise.baseline_m  # depth = focal_baseline / disparity
    disparity = np.where(valid, focal_baseline / np.where(valid, depth, 1.0), 0.0)
    disparity = disparity + noise.sigma_px * _smoothed_unit_noise(rng, depth.shape, noise.correlation_px)
    out = np.where(valid & (disparity > 0), focal_baseline / np.where(disparity > 0, disparity, 1.0), 0.0)
    if noise.quantum_m > 0:
        out = np.round(out / noise.quantum_m) * noise.quantum_m
    out[_edge_pixels(depth, noise.edge_jump_m, noise.edge_px)] = 0.0
    if noise.hole_fraction > 0:
        out[_holes(rng, out > 0, noise.hole_fraction, noise.hole_radius_px)] = 0.0
    return out.astype(np.float32)
