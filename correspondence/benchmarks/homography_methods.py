"""The methods of ``soco bench homography``: OpenCV baselines set as an expert would, and ours per backbone.

Baselines: SIFT, ORB and AKAZE at full resolution with the small-image settings of
:mod:`correspondence.local_features` (SIFT's contrast threshold 0.01 below 600 px, the image doubled below 375 px,
AKAZE's threshold 1e-4), Lowe's ratio 0.8 and a mutual check, a MAGSAC++ homography (3 px), every point mapped by
it; no homography is no answer. OpenCV SIFT with its defaults is there too (what a new user would run first).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from .homography_pairs import Pair, project

SIFT_DEFAULT = "OpenCV SIFT (defaults) + ratio 0.8 + MAGSAC++"


@dataclass(frozen=True)
class Prediction:
    xy: np.ndarray  # (K, 2), NaN where the method gives no answer
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)


def expert_kinds() -> tuple[str, ...]:
    """SIFT, ORB and AKAZE where this OpenCV has it (OpenCV 5 moved AKAZE to the contrib modules)."""
    from ..local_features import available
    return tuple(kind for kind in ("sift", "orb", "akaze") if available(kind))


def baseline_labels() -> list[str]:
    return [SIFT_DEFAULT] + [f"OpenCV {kind.upper()} (expert) + ratio + mutual + MAGSAC++" for kind in expert_kinds()]


def _homography_prediction(demo_xy: np.ndarray, live_xy: np.ndarray, pair: Pair, start: float,
                           info: dict[str, Any], threshold: float = 3.0) -> Prediction:
    xy = np.full(pair.query_xy.shape, np.nan)
    info["matches"] = len(demo_xy)
    if len(demo_xy) >= 4:
        h, mask = cv2.findHomography(demo_xy, live_xy, cv2.USAC_MAGSAC, threshold, maxIters=10000, confidence=0.999)
        if h is not None:
            xy = project(h, pair.query_xy)
            info["inliers"] = int(mask.sum())
    return Prediction(xy, time.perf_counter() - start, info)


def sift_default(pair: Pair, ratio: float = 0.8) -> Prediction:
    """OpenCV SIFT with its defaults + Lowe's ratio test + a MAGSAC++ homography."""
    start = time.perf_counter()
    sift = cv2.SIFT_create()
    gray = [cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) for image in (pair.demo, pair.live)]
    (kp1, d1), (kp2, d2) = (sift.detectAndCompute(g, None) for g in gray)
    info: dict[str, Any] = {"keypoints": [len(kp1), len(kp2)]}
    src = dst = np.zeros((0, 2))
    if d1 is not None and d2 is not None and len(kp1) >= 2 and len(kp2) >= 2:
        knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(d1, d2, k=2)
        good = [m for m, n in (k for k in knn if len(k) == 2) if m.distance < ratio * n.distance]
        src = np.array([kp1[m.queryIdx].pt for m in good]).reshape(-1, 2) + 0.5  # OpenCV centres -> continuous
        dst = np.array([kp2[m.trainIdx].pt for m in good]).reshape(-1, 2) + 0.5
    return _homography_prediction(src, dst, pair, start, info)


def expert(pair: Pair, kind: str) -> Prediction:
    """``kind`` (sift | orb | akaze) with the expert's per-size settings, ratio + mutual, MAGSAC++ homography."""
    from ..local_features import LocalFeatureSettings, detect, match
    start = time.perf_counter()
    settings = LocalFeatureSettings(kind=kind)
    demo, live = detect(pair.demo, settings), detect(pair.live, settings)
    demo_xy, live_xy = match(demo, live, settings)
    return _homography_prediction(demo_xy, live_xy, pair, start, {"keypoints": [len(demo), len(live)]})


def run_baselines(pair: Pair) -> dict[str, Prediction]:
    labels = baseline_labels()
    out = {labels[0]: sift_default(pair)}
    if pair.kind == "stereo":
        out[SGBM] = stereo_sgbm(pair)
    for label, kind in zip(labels[1:], expert_kinds()):
        out[label] = expert(pair, kind)
    return out


@dataclass(frozen=True)
class OursRow:
    label: str
    settings: Any  # MatchSettings


def our_rows(backbone: str) -> list[OursRow]:
    from ..geometry2d import GeometrySettings
    from ..keypoint_matching import MatchSettings
    return [
        OursRow(f"{backbone}, coarse (argmax)", MatchSettings(refine=False)),
        OursRow(f"{backbone}, refined (default, no geometry)", MatchSettings()),
        OursRow(f"{backbone}, --geometry homography", MatchSettings(geometry="homography")),
        OursRow(f"{backbone}, --geometry auto", MatchSettings(geometry="auto")),  # rotation / scale search on (auto)
        OursRow(f"{backbone}, --geometry auto --search none", MatchSettings(geometry="auto", search="none")),
        OursRow(f"{backbone}, --geometry auto --local-features none (dense only)",
                MatchSettings(geometry=GeometrySettings(model="auto", local_features="none"))),
        OursRow(f"{backbone}, --geometry auto --local-features none --search none",
                MatchSettings(geometry=GeometrySettings(model="auto", local_features="none"), search="none")),
    ]


def run_ours(pair: Pair, extractor, rows: list[OursRow]) -> list[Prediction]:
    """Each row on the pair (features computed once); points a row does not accept are no answer."""
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
                                              live_image=pair.live, extractor=extractor)
        seconds = features + time.perf_counter() - start
        info: dict[str, Any] = {"timings_s": {"features": features, **timings},
                                "refined": int(sum(m.refined for m in matches))}
        if matches.search is not None:
            info["search"] = matches.search.as_dict()
        if matches.geometry is not None:
            info["geometry"] = {k: v for k, v in matches.geometry.as_dict().items() if k != "matrix"}
        xy = np.array([m.live_xy if m.accepted else (np.nan, np.nan) for m in matches], dtype=np.float64)
        out.append(Prediction(xy.reshape(-1, 2), seconds, info))
    return out


SGBM = "OpenCV StereoSGBM (3-way, block 5, disparity range from the truth)"


def stereo_sgbm(pair: Pair) -> Prediction:
    """Rectified pairs only: StereoSGBM's disparity at each demo point (the demo as the right image: live
    x = demo x + disparity), with the disparity range an expert would set from the scene's depth range (here
    from the truth, rounded up to 16); invalid disparities are no answer."""
    start = time.perf_counter()
    gray = [cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) for image in (pair.demo, pair.live)]
    largest = float(np.nanmax(pair.truth_xy[:, 0] - pair.query_xy[:, 0]))
    count = int(16 * np.ceil((largest + 8) / 16))
    block = 5
    sgbm = cv2.StereoSGBM_create(minDisparity=0, numDisparities=count, blockSize=block, P1=8 * block * block,
                                 P2=32 * block * block, uniquenessRatio=10, speckleWindowSize=100, speckleRange=2,
                                 mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
    # The demo is the right view; mirrored, it becomes the left one of a mirrored pair.
    disparity = sgbm.compute(gray[0][:, ::-1].copy(), gray[1][:, ::-1].copy())[:, ::-1].astype(np.float64) / 16.0
    col = np.clip(np.floor(pair.query_xy[:, 0]).astype(int), 0, disparity.shape[1] - 1)
    row = np.clip(np.floor(pair.query_xy[:, 1]).astype(int), 0, disparity.shape[0] - 1)
    d = disparity[row, col]
    xy = np.where((d > 0)[:, None], np.column_stack([pair.query_xy[:, 0] + d, pair.query_xy[:, 1]]), np.nan)
    return Prediction(xy, time.perf_counter() - start, {"num_disparities": count})
