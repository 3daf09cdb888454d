"""Coarse-to-fine: a coarse cell match -> a sub-pixel position at the original resolution.

A feature cell spans 25-40 original pixels at 448 px, so a cell centre is never a precise answer. Around the
coarse match (and, with ``candidates`` > 1, a few runner-up cells) this module searches the original live pixels
(+-1 cell by default) for the demo's own patch by normalised cross-correlation (OpenCV ``matchTemplate``), with a quadratic
fit through the peak for the sub-pixel part. The demo patch is first warped by the demo -> live affine map of the
coarse dense matches (a robust global fit, or a local one per point), so rotation, scale and shear between the
views do not decorrelate it; NCC itself ignores brightness and contrast. Points whose best correlation is weak or
whose peak is flat in some direction or repeated elsewhere in the window (texture-less, an edge, a periodic
pattern, occluded, another instance) keep their coarse position and say so (``refined`` False); among peaks of
the same strength the one nearest the coarse match wins.

Everything here runs on the host with OpenCV on numpy arrays, after the device record came back.

Coordinates are the project's continuous pixels (pixel ``(row i, col j)`` spans ``[j, j+1) x [i, i+1)``);
OpenCV puts pixel centres at integers, so ``cv = continuous - 0.5`` at the boundary of this module.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from .errors import ConfigError

BLUR_LEVELS = (1.0, 1.5, 2.0, 3.0, 4.0)  # Gaussian sigmas of the prepared demo image (anti-aliasing for shrinking)


@dataclass(frozen=True)
class RefineSettings:
    """How a coarse match is refined. Sizes are in live cells so they follow the backbone's grid."""

    window_cells: float = 1.0  # search +- this many live cells around each coarse candidate
    patch_cells: float = 0.75  # template half-size in live cells ...
    min_radius_px: int = 6  # ... clamped to this range of original pixels
    max_radius_px: int = 24
    min_ncc: float = 0.5  # a weaker peak keeps the coarse position
    min_sharpness: float = 0.003  # so does a peak flatter than this in some direction (NCC per px^2) ...
    min_distinctness: float = 0.03  # ... or one that another peak of the window nearly equals (repeated texture)
    distance_penalty: float = 0.05  # NCC a peak loses per squared live cell of distance from the coarse position
    neighbourhood_cells: float = 3.0  # demo radius of the coarse dense matches behind the local affine map
    blur_sigma: float = 1.0  # Gaussian blur of both images before correlating (noise, aliasing)
    candidates: int = 1  # the k best coarse cells (not neighbours of each other) are refined; see candidate_margin.
    # Re-ranking (e.g. 8 candidates, window 2) recovers wrong coarse cells under strong viewpoint changes (twice the
    # homography benchmark's PCK@5) but can trade a right cell for a better-correlating wrong one where shading
    # changes between views (rendered 3D scenes): opt-in.
    candidate_margin: float = 0.1  # another candidate replaces the best cell only with this much more correlation
    local_affine: bool = False  # warp by the local affine of the neighbouring dense matches (default: the global one,
    # a RANSAC affine of all mutual dense matches: measured steadier than local fits to cell-quantised neighbours)
    dense_field: bool = True  # check keypoints against the dense matches' affine field where it is trusted, and
    # place the ones the correlation refuses by it (correspondence/dense_field.py)
    field_min_support: float = 0.4  # trusted from this share of dense cells agreeing within a live cell (self: 1.0,
    # other instances <= 0.2 measured), globally and among each keypoint's neighbours
    field_min_matches: int = 12  # ... and this many agreeing cells
    field_cells: int = 16  # agreeing dense cells refined to make the field sub-pixel (0: the coarse fit; 16 and 64
    # measured alike on turned copies, 0 loses 1.7 points of PCK@5)

    def __post_init__(self) -> None:
        if not (self.window_cells > 0 and self.patch_cells > 0 and 1 <= self.min_radius_px <= self.max_radius_px
                and self.candidates >= 1):
            raise ConfigError(f"refinement needs positive window/patch sizes and 1 <= min_radius_px <= max_radius_px, "
                              f"got {self}")
        if not 0.0 < self.field_min_support <= 1.0 or self.field_min_matches < 3 or self.field_cells < 0:
            raise ConfigError(f"the dense field needs 0 < field_min_support <= 1, field_min_matches >= 3 and "
                              f"field_cells >= 0, got {self}")
        if not -1.0 <= self.min_ncc <= 1.0:
            raise ConfigError(f"min_ncc is a correlation in [-1, 1], got {self.min_ncc}")


@dataclass(frozen=True)
class PreparedImage:
    """A grayscale float32 image blurred at a few levels (one array per sigma in :data:`BLUR_LEVELS`)."""

    levels: tuple[np.ndarray, ...]

    @property
    def shape(self) -> tuple[int, int]:
        return self.levels[0].shape[:2]

    def at(self, sigma: float) -> np.ndarray:
        """The level nearest ``sigma`` (by ratio; the ends beyond the ladder). Nearest, not the next one up: a
        field fitted a fraction of a percent below scale 1 must not blur the template half as much again as the
        live image."""
        available = np.array(BLUR_LEVELS[:len(self.levels)])
        return self.levels[int(np.argmin(np.abs(np.log(available / max(sigma, 1e-6)))))]


def gray(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    return image.astype(np.float32)


def prepare_image(image: np.ndarray, settings: RefineSettings, levels: bool = True) -> PreparedImage:
    """Grayscale + blur (``levels``: the whole blur ladder, for a demo that may be shrunk into the live view)."""
    base = gray(image)
    sigmas = [s * settings.blur_sigma for s in BLUR_LEVELS] if levels else [settings.blur_sigma]
    return PreparedImage(tuple(cv2.GaussianBlur(base, (0, 0), s) if s > 0 else base for s in sigmas))


@dataclass(frozen=True)
class Refinement:
    xy: np.ndarray  # (K, 2) live pixels: refined where ``refined``, else the coarse position
    refined: np.ndarray  # (K,) bool
    ncc: np.ndarray  # (K,) peak correlation (NaN where no search ran)
    affine: np.ndarray  # (K, 2, 2) the local demo -> live linear map the demo patch was warped with
    sharpness: np.ndarray  # (K,) the peak's smallest curvature (NCC per px^2; NaN where no search ran)


def global_affine(demo_xy: np.ndarray, live_xy: np.ndarray, threshold: float) -> np.ndarray:
    """A robust demo -> live linear part from all coarse matches (identity when they do not support one)."""
    if len(demo_xy) >= 3:
        model, _ = cv2.estimateAffine2D(demo_xy.astype(np.float64), live_xy.astype(np.float64), method=cv2.RANSAC,
                                        ransacReprojThreshold=float(threshold), maxIters=2000, confidence=0.99)
        if model is not None and plausible(model[:, :2]):
            return model[:, :2]
    return np.eye(2)


def plausible(linear: np.ndarray) -> bool:
    """A linear map a real view change could give: no mirror, no collapse, no extreme stretch."""
    if not np.isfinite(linear).all() or np.linalg.det(linear) <= 0:
        return False
    s = np.linalg.svd(linear, compute_uv=False)
    return bool(0.2 <= s[-1] and s[0] <= 5.0 and s[0] / s[-1] <= 4.0)


def local_affines(points: np.ndarray, demo_xy: np.ndarray, live_xy: np.ndarray, radius: float, threshold: float,
                  fallback: np.ndarray) -> np.ndarray:
    """``(K, 2, 2)``: per demo point, the linear part of an affine map fitted to the coarse matches within
    ``radius`` demo pixels (least squares, trimmed twice at ``threshold`` live pixels); ``fallback`` where too few
    neighbours agree or the fit is implausible (a mirror, a collapse)."""
    out = np.repeat(fallback[None], len(points), 0)
    if len(demo_xy) < 6 or len(points) == 0:
        return out
    d2 = ((points[:, None, :] - demo_xy[None]) ** 2).sum(-1)
    for k in range(len(points)):
        use = np.flatnonzero(d2[k] <= radius * radius)
        for _ in range(3):
            if len(use) < 6:
                break
            design = np.column_stack([demo_xy[use], np.ones(len(use))])
            coef, *_ = np.linalg.lstsq(design, live_xy[use], rcond=None)
            residual = np.linalg.norm(design @ coef - live_xy[use], axis=1)
            keep = residual <= max(threshold, 2.5 * float(np.median(residual)))
            if keep.all():
                break
            use = use[keep]
        if len(use) >= 6:
            linear = coef[:2].T
            if plausible(linear):
                out[k] = linear
    return out


def _peak(response: np.ndarray, row: int, col: int) -> tuple[float, float, float]:
    """Sub-pixel offset (dx, dy) of a correlation peak from quadratic fits through its 3 x 3 neighbourhood, and the
    peak's sharpness: the smallest curvature over directions (NCC lost per px^2 in the worst direction). A peak
    on a plain region or along an edge is flat in some direction, so its position there is noise."""
    h, w = response.shape
    if not (0 < row < h - 1 and 0 < col < w - 1):
        return 0.0, 0.0, 0.0
    r = response[row - 1:row + 2, col - 1:col + 2].astype(np.float64)
    gx, gy = 0.5 * (r[1, 2] - r[1, 0]), 0.5 * (r[2, 1] - r[0, 1])
    hxx, hyy = r[1, 2] - 2 * r[1, 1] + r[1, 0], r[2, 1] - 2 * r[1, 1] + r[0, 1]
    hxy = 0.25 * (r[2, 2] - r[2, 0] - r[0, 2] + r[0, 0])
    hessian = np.array([[hxx, hxy], [hxy, hyy]])
    sharpness = float(np.linalg.eigvalsh(-hessian)[0])
    if sharpness <= 0:
        return 0.0, 0.0, sharpness
    dx, dy = -np.linalg.solve(hessian, [gx, gy])
    if max(abs(dx), abs(dy)) > 0.5:
        # Beyond the pixel: the joint solve divided by a near-singular Hessian (a diagonal edge; measured on an
        # image against itself, it threw exact integer peaks half a pixel off). One parabola per axis instead.
        dx, dy = -gx / min(hxx, -1e-9), -gy / min(hyy, -1e-9)
    return float(np.clip(dx, -0.5, 0.5)), float(np.clip(dy, -0.5, 0.5)), sharpness


def refine_points(demo: PreparedImage, live: PreparedImage, demo_xy: np.ndarray, coarse_xy: np.ndarray,
                  affines: np.ndarray, live_cell_px: float, settings: RefineSettings,
                  live_mask: np.ndarray | None = None, search_px: float | None = None,
                  distinct_px: float | None = None) -> Refinement:
    """Refine each coarse live match of a demo point by NCC of the affinely warped demo patch (see the module).
    ``search_px``: the half-width of the search in live pixels (default: ``window_cells`` live cells);
    ``distinct_px``: the peak must also stand out among the correlations this far around (default: the search)."""
    k = len(demo_xy)
    xy = np.array(coarse_xy, dtype=np.float64).reshape(-1, 2).copy()
    refined = np.zeros(k, dtype=bool)
    ncc = np.full(k, np.nan)
    sharpness = np.full(k, np.nan)
    radius = int(np.clip(round(settings.patch_cells * live_cell_px), settings.min_radius_px, settings.max_radius_px))
    search = max(1, int(np.ceil(search_px if search_px is not None else settings.window_cells * live_cell_px)))
    reach = max(search, int(np.ceil(distinct_px or 0)))  # the correlation window (the search is its centre)
    size = 2 * radius + 1
    live_image = live.levels[0]
    height, width = live_image.shape
    for i in range(k):
        linear = affines[i]
        shrink = float(np.linalg.svd(linear, compute_uv=False)[-1])
        source = demo.at(settings.blur_sigma / max(shrink, 1e-3))
        # The template is centred on the demo pixel nearest the point (no interpolation for an unwarped patch: a
        # half-pixel resampled template decorrelates on sharp edges and its peak slides along them); the point's
        # sub-pixel offset from that pixel is added back through the local map.
        centre_demo = demo_xy[i] - 0.5  # OpenCV pixel centres
        anchor = np.round(centre_demo)
        offset = linear @ (centre_demo - anchor)
        prior = xy[i] - offset  # where the anchor pixel is expected in the live view
        matrix = np.hstack([linear, (radius - linear @ anchor)[:, None]])
        template = cv2.warpAffine(source, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if float(template.std()) < 1.0:  # texture-less: any position correlates the same
            continue
        cx, cy = np.round(prior - 0.5).astype(int)
        if not (0 <= cx < width and 0 <= cy < height):  # nothing to search: the point is not in the live view
            continue
        x0, y0 = cx - reach - radius, cy - reach - radius
        response = cv2.matchTemplate(_window(live_image, x0, y0, size + 2 * reach), template, cv2.TM_CCOEFF_NORMED)
        response = np.nan_to_num(response, nan=-1.0, posinf=-1.0, neginf=-1.0)
        # Candidate centres (OpenCV pixels): inside the image (its mask when given), even where the template
        # overhangs the border (the window is mirrored there, as the demo template is). Centres beyond the border
        # still shape the sub-pixel fit of a peak on it.
        centre_rows = np.arange(response.shape[0]) + y0 + radius
        centre_cols = np.arange(response.shape[1]) + x0 + radius
        inside = ((centre_rows >= 0) & (centre_rows < height))[:, None] & ((centre_cols >= 0) & (centre_cols < width))
        if live_mask is not None:
            response = np.where(live_mask[np.clip(centre_rows, 0, height - 1)][:, np.clip(centre_cols, 0, width - 1)],
                                response, -1.0)
        # The coarse match is evidence too: a peak costs distance_penalty per squared cell from it, which breaks
        # the ties of repeated texture in favour of the coarse position.
        rows = (centre_rows + 0.5 - prior[1]) / live_cell_px
        cols = (centre_cols + 0.5 - prior[0]) / live_cell_px
        scored = np.where(inside, response - settings.distance_penalty * (rows[:, None] ** 2 + cols[None, :] ** 2),
                          -np.inf)
        if reach > search:  # the peak is looked for within the search; the rest only tests its distinctness
            outside = (np.abs(centre_rows - cy) > search)[:, None] | (np.abs(centre_cols - cx) > search)[None, :]
            scored = np.where(outside, -np.inf, scored)
        row, col = np.unravel_index(int(np.argmax(scored)), scored.shape)
        peak = float(response[row, col])
        ncc[i] = peak
        if peak < settings.min_ncc:
            continue
        dx, dy, sharp = _peak(response, row, col)
        sharpness[i] = sharp
        if sharp < settings.min_sharpness:
            continue
        # Distinct in the correlation itself (not after the prior, which would make any of a periodic pattern's
        # peaks look unique near wherever the search was centred, e.g. a wrong model's prediction).
        apart = max(2, radius // 2)  # another local maximum, not a shoulder of this one
        others = np.where(inside & (response >= cv2.dilate(response, np.ones((3, 3), np.uint8))), response, -np.inf)
        others[max(0, row - apart):row + apart + 1, max(0, col - apart):col + apart + 1] = -np.inf
        if float(others.max()) > peak - settings.min_distinctness:
            continue  # repeated texture: several places fit as well
        xy[i] = (x0 + col + radius + dx + 0.5 + offset[0], y0 + row + radius + dy + 0.5 + offset[1])
        refined[i] = True
    xy[:, 0] = np.clip(xy[:, 0], 0.0, np.nextafter(width, 0))
    xy[:, 1] = np.clip(xy[:, 1], 0.0, np.nextafter(height, 0))
    return Refinement(xy, refined, ncc, affines, sharpness)


def _window(image: np.ndarray, x0: int, y0: int, size: int) -> np.ndarray:
    """The ``size`` x ``size`` window of ``image`` from ``(x0, y0)``, mirrored where it leaves the image (so a point
    near the border is correlated at its own position, not pushed inwards by a clipped window)."""
    height, width = image.shape
    top, left = max(0, -y0), max(0, -x0)
    bottom, right = max(0, y0 + size - height), max(0, x0 + size - width)
    crop = image[max(0, y0):min(height, y0 + size), max(0, x0):min(width, x0 + size)]
    if top or left or bottom or right:
        crop = cv2.copyMakeBorder(crop, top, bottom, left, right, cv2.BORDER_REFLECT)
    return crop


@dataclass(frozen=True)
class DenseCoarse:
    """Coarse matches of a grid of demo cells (original pixels): the support of refinement and verification."""

    demo_xy: np.ndarray  # (M, 2)
    live_xy: np.ndarray  # (M, 2)
    score: np.ndarray  # (M,)
    mutual: np.ndarray  # (M,) bool


class FrameRefiner:
    """Refinement of any demo points of one frame against its live image: the images, the dense coarse matches
    behind the affine warp and the cell sizes are prepared once per frame."""

    def __init__(self, demo: PreparedImage, live: PreparedImage, dense: DenseCoarse, support: np.ndarray,
                 demo_cell_px: float, live_cell_px: float, settings: RefineSettings,
                 live_mask: np.ndarray | None = None) -> None:
        self.demo, self.live, self.dense, self.support, self.settings = demo, live, dense, support, settings
        self.demo_cell, self.live_cell, self.mask = demo_cell_px, live_cell_px, live_mask
        self.fallback = global_affine(dense.demo_xy[support], dense.live_xy[support], threshold=live_cell_px)

    def affines(self, demo_xy: np.ndarray) -> np.ndarray:
        """How the demo patch at each point looks in the live view: the global affine map of the dense matches,
        or (``local_affine``) the one of each point's neighbours."""
        if not self.settings.local_affine:
            return np.repeat(self.fallback[None], len(demo_xy), 0)
        return local_affines(demo_xy, self.dense.demo_xy[self.support], self.dense.live_xy[self.support],
                             self.settings.neighbourhood_cells * self.demo_cell, self.live_cell, self.fallback)

    def __call__(self, demo_xy: np.ndarray, coarse_xy: np.ndarray, affines: np.ndarray | None = None,
                 search_px: float | None = None, min_ncc: float | None = None,
                 min_sharpness: float | None = None, distinct_px: float | None = None) -> Refinement:
        """:func:`refine_points` with this frame's pieces; ``affines`` (e.g. a fitted model's jacobians), the
        search half-width and stricter peak requirements (for matches that will support a model) can be given."""
        settings = self.settings
        if min_ncc is not None or min_sharpness is not None:
            settings = replace(settings, min_ncc=max(settings.min_ncc, min_ncc or -1.0),
                               min_sharpness=max(settings.min_sharpness, min_sharpness or 0.0))
        return refine_points(self.demo, self.live, demo_xy, coarse_xy,
                             self.affines(demo_xy) if affines is None else affines, self.live_cell, settings,
                             self.mask, search_px, distinct_px)

    def best_candidates(self, demo_xy: np.ndarray, candidates: np.ndarray | None, coarse_xy: np.ndarray
                        ) -> Refinement:
        """Refine every coarse candidate ``(N, k, 2)`` (NaN-padded, the first is the match) of each point; the
        first stands unless another correlates better by ``candidate_margin`` (the coarse similarity keeps a say;
        full-resolution texture breaks its near-ties)."""
        if candidates is None or candidates.shape[1] == 1:
            return self(demo_xy, coarse_xy)
        n, k = candidates.shape[:2]
        rows, cols = np.nonzero(np.isfinite(candidates).all(2))
        result = self(demo_xy[rows], candidates[rows, cols], self.affines(demo_xy)[rows])
        score = np.where(result.refined, np.nan_to_num(result.ncc, nan=-1.0), -np.inf)
        table = np.full((n, k), -np.inf)
        table[rows, cols] = score
        where = np.full((n, k), -1, dtype=np.int64)
        where[rows, cols] = np.arange(len(rows))
        first = where[:, 0]
        base = np.nan_to_num(result.ncc[first], nan=-1.0)  # the best cell's own peak, refined or not, sets the bar
        best = np.argmax(table, 1)
        switch = (best > 0) & (table[np.arange(n), best] > base + self.settings.candidate_margin)
        pick = np.where(switch, where[np.arange(n), best], first)
        return Refinement(result.xy[pick], result.refined[pick], result.ncc[pick], result.affine[pick],
                          result.sharpness[pick])
