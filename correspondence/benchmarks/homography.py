"""``soco bench homography``: precise same-object transfer on real textures, against OpenCV.

Real photographs are warped by random homographies with photometric changes (the protocol of HPatches-style
synthetic warps: rotation up to 30 deg, scale 0.6-1.5, a perspective corner shift, brightness, contrast, noise and
blur), at the original resolution, so the live position of every demo pixel is known exactly. A grid of about 200
demo points per pair is transferred by each method in the same run:

* the baseline a new user would pick: OpenCV SIFT, Lowe's ratio test, a MAGSAC++ homography, points mapped by it;
* ours, per backbone: coarse cells (argmax; soft-argmax with the SOCO reference's values and with the relative
  temperature), refined at the original resolution, and refined + verified by a homography.

Reported: PCK at 1/3/5/10 px over all points, the median error (a point a method cannot place counts as an
infinite error) and the time per pair.
"""
from __future__ import annotations

import io
import json
import math
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np
from PIL import Image

from ..errors import InputError

THRESHOLDS_PX = (1.0, 3.0, 5.0, 10.0)
RERANKED = {"candidates": 8, "window_cells": 2.0}  # the refinement that re-ranks coarse cells (opt-in)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass(frozen=True)
class WarpSettings:
    """The random homography and photometric change of one pair."""

    max_rotation_deg: float = 30.0
    scale_range: tuple[float, float] = (0.6, 1.5)
    perspective: float = 0.1  # corner shift, fraction of the image side
    translation: float = 0.1  # fraction of the image side
    brightness: float = 25.0  # +- grey levels
    contrast: tuple[float, float] = (0.7, 1.3)
    noise_sigma: tuple[float, float] = (0.0, 6.0)
    blur_sigma: tuple[float, float] = (0.0, 1.2)
    min_visible: float = 0.4  # share of the query grid that must land inside the live image


@dataclass(frozen=True)
class HomographyBenchConfig:
    backbones: tuple[str, ...] = ("daisy",)
    size: int = 448
    points: int = 200
    pairs_per_image: int = 1
    max_umd: int = 16
    seed: int = 0
    warp: WarpSettings = field(default_factory=WarpSettings)
    random_weights: bool = False
    device: str = "cpu"
    weights: str | None = None


@dataclass(frozen=True)
class SourceImage:
    name: str
    rgb: np.ndarray
    group: str = "photos"  # where it came from (a folder's name, umd-i): results are also given per group


@dataclass(frozen=True)
class Pair:
    name: str
    group: str
    demo: np.ndarray
    live: np.ndarray
    homography: np.ndarray  # 3 x 3, continuous pixels, demo -> live
    query_xy: np.ndarray  # (K, 2) demo pixels whose live position is inside the live image
    truth_xy: np.ndarray  # (K, 2)


# ------------------------------------------------------------------------------------------------ images


def _is_photo(image: Image.Image) -> bool:
    """RGB photographs only: palette / grey images in these folders are annotation masks."""
    return image.mode in ("RGB", "RGBA", "CMYK", "YCbCr")


def images_from_folder(folder: Path) -> list[SourceImage]:
    out = []
    for path in sorted(Path(folder).iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        with Image.open(path) as image:
            if _is_photo(image):
                out.append(SourceImage(path.name, np.asarray(image.convert("RGB")), Path(folder).name))
    return out


def images_from_umd(zip_path: Path, limit: int) -> list[SourceImage]:
    """RGB frames of UMD-i (``*_rgb.jpg``), the first of each tool instance, at most ``limit`` (0: all)."""
    out, seen = [], set()
    with zipfile.ZipFile(zip_path) as archive:
        for name in sorted(archive.namelist()):
            if not name.endswith("_rgb.jpg"):
                continue
            instance = Path(name).parent.name
            if instance in seen:
                continue
            seen.add(instance)
            with Image.open(io.BytesIO(archive.read(name))) as image:
                out.append(SourceImage(f"umd/{Path(name).name}", np.asarray(image.convert("RGB")), "umd-i"))
    if limit > 0 and len(out) > limit:
        pick = np.linspace(0, len(out) - 1, limit).round().astype(int)
        out = [out[i] for i in pick]
    return out


def default_sources() -> tuple[Path | None, Path | None]:
    """The project's shared photos and UMD-i archive (``$SOCO_SHARED_DIR`` or ``../shared``), where present."""
    import os
    root = Path(os.environ.get("SOCO_SHARED_DIR", Path(__file__).resolve().parents[3] / "shared"))
    images, umd = root / "data" / "images", root / "data" / "umd_i" / "UMD_i.zip"
    return (images if images.is_dir() else None), (umd if umd.is_file() else None)


def collect_images(folders: Iterable[Path], umd_zip: Path | None, max_umd: int) -> list[SourceImage]:
    images: list[SourceImage] = []
    for folder in folders:
        if not Path(folder).is_dir():
            raise InputError(f"image folder {folder} does not exist")
        images += images_from_folder(Path(folder))
    if umd_zip is not None:
        if not Path(umd_zip).is_file():
            raise InputError(f"UMD-i archive {umd_zip} does not exist")
        images += images_from_umd(Path(umd_zip), max_umd)
    if not images:
        raise InputError("no photographs to warp: pass --images DIR (or make ../shared/data available)")
    return images


# ------------------------------------------------------------------------------------------------ warps

_SHIFT = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])  # continuous -> OpenCV pixel centres


def to_continuous(h_cv: np.ndarray) -> np.ndarray:
    """A homography between OpenCV pixel coordinates as one between continuous pixel coordinates."""
    return np.linalg.inv(_SHIFT) @ h_cv @ _SHIFT


def project(h: np.ndarray, xy: np.ndarray) -> np.ndarray:
    p = np.column_stack([xy, np.ones(len(xy))]) @ h.T
    return p[:, :2] / p[:, 2:3]


def query_grid(width: int, height: int, points: int) -> np.ndarray:
    """About ``points`` demo points on a regular grid (cell centres of an nx x ny split of the image)."""
    nx = max(2, round(math.sqrt(points * width / height)))
    ny = max(2, round(points / nx))
    xs = (np.arange(nx) + 0.5) * width / nx
    ys = (np.arange(ny) + 0.5) * height / ny
    return np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)


def random_homography(rng: np.random.Generator, width: int, height: int, settings: WarpSettings) -> np.ndarray:
    """OpenCV-pixel homography: a perspective corner shift, then rotation and scale about the centre, then a
    translation."""
    side = float(max(width, height))
    corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], dtype=np.float32)
    moved = corners + rng.uniform(-settings.perspective, settings.perspective, (4, 2)).astype(np.float32) * side
    perspective = cv2.getPerspectiveTransform(corners, moved.astype(np.float32))
    angle = math.radians(rng.uniform(-settings.max_rotation_deg, settings.max_rotation_deg))
    low, high = settings.scale_range
    scale = math.exp(rng.uniform(math.log(low), math.log(high)))
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    shift = rng.uniform(-settings.translation, settings.translation, 2) * side
    similarity = np.array([[c, -s, cx - c * cx + s * cy + shift[0]], [s, c, cy - s * cx - c * cy + shift[1]],
                           [0.0, 0.0, 1.0]])
    return similarity @ perspective


def photometric(rng: np.random.Generator, image: np.ndarray, settings: WarpSettings) -> np.ndarray:
    out = image.astype(np.float32)
    blur = rng.uniform(*settings.blur_sigma)
    if blur > 0.05:
        out = cv2.GaussianBlur(out, (0, 0), blur)
    out = (out - 128.0) * rng.uniform(*settings.contrast) + 128.0 + rng.uniform(-settings.brightness,
                                                                                 settings.brightness)
    out = out + rng.normal(0.0, rng.uniform(*settings.noise_sigma), out.shape)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def make_pair(rng: np.random.Generator, source: SourceImage, index: int, points: int, settings: WarpSettings) -> Pair:
    """A warped, photometrically changed copy of ``source`` and the exact live position of its grid points."""
    height, width = source.rgb.shape[:2]
    query = query_grid(width, height, points)
    for _ in range(100):
        h_cv = random_homography(rng, width, height, settings)
        h = to_continuous(h_cv)
        truth = project(h, query)
        inside = (truth[:, 0] >= 0) & (truth[:, 0] < width) & (truth[:, 1] >= 0) & (truth[:, 1] < height)
        if inside.mean() >= settings.min_visible:
            break
    jac = h_cv[:2, :2] - np.outer(project(h_cv, np.array([[width / 2, height / 2]]))[0], h_cv[2, :2])
    shrink = math.sqrt(abs(np.linalg.det(jac))) / max(abs(h_cv[2] @ [width / 2, height / 2, 1]), 1e-9)
    demo = source.rgb
    blurred = cv2.GaussianBlur(demo, (0, 0), 0.5 * math.sqrt(1 / shrink ** 2 - 1)) if shrink < 0.9 else demo
    warped = cv2.warpPerspective(blurred, h_cv, (width, height), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    live = photometric(rng, warped, settings)
    return Pair(f"{source.name}#{index}", source.group, demo, live, h, query[inside], truth[inside])


# ------------------------------------------------------------------------------------------------ methods


@dataclass(frozen=True)
class Prediction:
    xy: np.ndarray  # (K, 2), NaN where the method gives no answer
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)


def sift_ransac(pair: Pair, ratio: float = 0.8, threshold: float = 3.0) -> Prediction:
    """OpenCV SIFT + Lowe's ratio test + a MAGSAC++ homography; every query point mapped by it."""
    start = time.perf_counter()
    sift = cv2.SIFT_create()
    gray = [cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) for image in (pair.demo, pair.live)]
    (kp1, d1), (kp2, d2) = (sift.detectAndCompute(g, None) for g in gray)
    info: dict[str, Any] = {"keypoints": [len(kp1), len(kp2)]}
    xy = np.full(pair.query_xy.shape, np.nan)
    if d1 is not None and d2 is not None and len(kp1) >= 2 and len(kp2) >= 2:
        knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(d1, d2, k=2)
        good = [m for m, n in (k for k in knn if len(k) == 2) if m.distance < ratio * n.distance]
        info["ratio_matches"] = len(good)
        if len(good) >= 4:
            src = np.array([kp1[m.queryIdx].pt for m in good]) + 0.5  # OpenCV centres -> continuous pixels
            dst = np.array([kp2[m.trainIdx].pt for m in good]) + 0.5
            h, mask = cv2.findHomography(src, dst, cv2.USAC_MAGSAC, threshold, maxIters=10000, confidence=0.999)
            if h is not None:
                xy = project(h, pair.query_xy)
                info["inliers"] = int(mask.sum())
    return Prediction(xy, time.perf_counter() - start, info)


@dataclass(frozen=True)
class OursRow:
    label: str
    settings: Any  # MatchSettings
    use: str = "final"  # final | coarse: which position the row reports


def our_rows(backbone: str) -> list[OursRow]:
    from ..keypoint_matching import MatchSettings
    return [
        OursRow(f"{backbone}, coarse (argmax)", MatchSettings(refine=False)),
        OursRow(f"{backbone}, coarse (soft-argmax, SOCO reference: w 7, beta 0.02)",
                MatchSettings.protocol("soco", method="soft-argmax")),
        OursRow(f"{backbone}, coarse (soft-argmax, relative temperature: w 1, beta 0.1)",
                MatchSettings(method="soft-argmax", refine=False)),
        OursRow(f"{backbone}, refined (default: best cell, +-1 cell)", MatchSettings()),
        OursRow(f"{backbone}, refined, re-ranked (8 candidates, +-2 cells)", MatchSettings(refinement=RERANKED)),
        OursRow(f"{backbone}, refined + homography verification", MatchSettings(geometry="homography")),
    ]


def run_ours(pair: Pair, extractor, rows: list[OursRow]) -> list[Prediction]:
    from ..io import KeypointSet, NamedPoint
    from ..keypoint_matching import match_keypoint_set
    keypoints = KeypointSet(tuple(NamedPoint(f"p{i}", (float(x), float(y))) for i, (x, y) in enumerate(pair.query_xy)))
    start = time.perf_counter()
    demo, live = extractor.extract_batch([pair.demo, pair.live], cache=False)
    features = time.perf_counter() - start
    out = []
    for row in rows:
        start = time.perf_counter()
        matches, timings = match_keypoint_set(demo, keypoints, live, settings=row.settings, demo_image=pair.demo,
                                              live_image=pair.live)
        seconds = features + time.perf_counter() - start
        info: dict[str, Any] = {"timings_s": {"features": features, **timings},
                                "refined": int(sum(m.refined for m in matches))}
        if matches.geometry is not None:
            info["geometry"] = matches.geometry.as_dict()
        xy = np.array([m.live_xy if m.accepted else (np.nan, np.nan) for m in matches], dtype=np.float64)
        out.append(Prediction(xy, seconds, info))
    return out


# ------------------------------------------------------------------------------------------------ scores


def errors(prediction: Prediction, pair: Pair) -> np.ndarray:
    err = np.linalg.norm(prediction.xy - pair.truth_xy, axis=1)
    return np.where(np.isfinite(err), err, np.inf)


def summarise(errs: np.ndarray, seconds: list[float]) -> dict[str, float]:
    out = {f"pck@{t:g}": float(100.0 * np.mean(errs < t)) if len(errs) else 0.0 for t in THRESHOLDS_PX}
    out["median_px"] = float(np.median(errs)) if len(errs) else float("nan")
    out["answered"] = float(100.0 * np.mean(np.isfinite(errs))) if len(errs) else 0.0
    out["seconds_per_pair"] = float(np.mean(seconds)) if seconds else float("nan")
    return out


def markdown(summary: dict[str, dict[str, float]], header: str) -> str:
    lines = [header, "", "| method | PCK@1 | PCK@3 | PCK@5 | PCK@10 | median error (px) | answered | s / pair |",
             "|---|---|---|---|---|---|---|---|"]
    for name, row in summary.items():
        median = "inf" if not np.isfinite(row["median_px"]) else f"{row['median_px']:.2f}"
        lines.append(f"| {name} | {row['pck@1']:.1f} | {row['pck@3']:.1f} | {row['pck@5']:.1f} | {row['pck@10']:.1f} "
                     f"| {median} | {row['answered']:.1f} % | {row['seconds_per_pair']:.2f} |")
    return "\n".join(lines) + "\n"


def run_homography_benchmark(images: list[SourceImage], config: HomographyBenchConfig, out_dir: str | Path,
                             progress: bool = True) -> dict[str, Any]:
    from ..api import Matcher
    from ..viz import save, save_line_plot

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    pairs = [make_pair(rng, source, k, config.points, config.warp) for source in images
             for k in range(config.pairs_per_image)]
    baseline = "OpenCV SIFT + ratio 0.8 + MAGSAC++ homography"
    all_errors: dict[str, list[np.ndarray]] = {baseline: []}
    seconds: dict[str, list[float]] = {baseline: []}
    per_pair: list[dict[str, Any]] = []
    extractors = {}
    for backbone in config.backbones:
        matcher = Matcher.create(backbone, weights=config.weights, random_weights=config.random_weights,
                                 size=config.size, device=config.device, cache_size=0)
        extractors[backbone] = (matcher.extractor, our_rows(backbone))
        for row in extractors[backbone][1]:
            all_errors[row.label], seconds[row.label] = [], []
    examples = []
    for i, pair in enumerate(pairs):
        record: dict[str, Any] = {"pair": pair.name, "group": pair.group, "size": list(pair.demo.shape[1::-1]),
                                  "points": len(pair.query_xy),
                                  "homography": pair.homography.tolist(), "methods": {}}
        predictions = {baseline: sift_ransac(pair)}
        for backbone, (extractor, rows) in extractors.items():
            predictions.update({row.label: p for row, p in zip(rows, run_ours(pair, extractor, rows))})
        for label, prediction in predictions.items():
            err = errors(prediction, pair)
            all_errors[label].append(err)
            seconds[label].append(prediction.seconds)
            record["methods"][label] = {**summarise(err, [prediction.seconds]), **prediction.info}
        per_pair.append(record)
        if i < 2:
            examples.append((pair, predictions))
        if progress:
            best = max((label for label in predictions if label != baseline),
                       key=lambda label: record["methods"][label]["pck@5"], default=None)
            print(f"[{i + 1}/{len(pairs)}] {pair.name} ({pair.demo.shape[1]}x{pair.demo.shape[0]}, "
                  f"{len(pair.query_xy)} points): SIFT PCK@5 {record['methods'][baseline]['pck@5']:.1f}"
                  + (f", {best} {record['methods'][best]['pck@5']:.1f}" if best else ""), flush=True)
    summary = {label: summarise(np.concatenate(errs) if errs else np.zeros(0), seconds[label])
               for label, errs in all_errors.items()}
    header = (f"{len(pairs)} pairs ({len(images)} photos x {config.pairs_per_image}), "
              f"{sum(len(p.query_xy) for p in pairs)} points, backbone input {config.size} px, seed {config.seed}")
    table = markdown(summary, f"All pairs: {header}")
    groups = sorted({pair.group for pair in pairs})
    by_group = {}
    for group in groups if len(groups) > 1 else ():
        members = [i for i, pair in enumerate(pairs) if pair.group == group]
        by_group[group] = {label: summarise(np.concatenate([errs[i] for i in members]),
                                            [seconds[label][i] for i in members])
                           for label, errs in all_errors.items()}
        table += "\n" + markdown(by_group[group], f"Group {group}: {len(members)} pairs, "
                                                  f"{sum(len(pairs[i].query_xy) for i in members)} points")
    (out / "results.md").write_text(table, encoding="utf-8")
    result = {"config": asdict(config), "images": [s.name for s in images], "summary": summary,
              "by_group": by_group, "pairs": per_pair}
    (out / "results.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    curve = np.linspace(0.0, 20.0, 41)
    save_line_plot({label: (curve, [100.0 * np.mean(np.concatenate(errs) < t) for t in curve])
                    for label, errs in all_errors.items()}, out / "pck_curve.png", "threshold (px)", "PCK (%)",
                   "homography warps of real photos", ylim=(0, 100), marker=None)
    for k, (pair, predictions) in enumerate(examples):
        save(_example(pair, predictions), out / f"example_{k}.png")
    return {"summary": summary, "markdown": table, "pairs": len(pairs), "paths": {
        "results": str(out / "results.json"), "table": str(out / "results.md"), "plot": str(out / "pck_curve.png")}}


def _example(pair: Pair, predictions: dict[str, Prediction]):
    """The last row of ours on the first pairs: green within 5 px, red beyond, unplaced points as dots."""
    from ..viz import match_overlay
    label = list(predictions)[-1]
    err = errors(predictions[label], pair)
    xy = np.where(np.isfinite(predictions[label].xy), predictions[label].xy, pair.truth_xy)
    return match_overlay(pair.demo, pair.live, pair.query_xy, xy, [""] * len(xy), accepted=np.isfinite(err),
                         colors=[(30, 180, 60) if e < 5.0 else (220, 40, 40) for e in err],
                         title=f"{pair.name}: {label}; green: within 5 px of the truth, red: beyond, faint: unplaced",
                         max_labels=0)
