"""An image against itself, turned / scaled copies and other instances, default `soco match` settings (issue 21).

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python scripts/self_match_check.py [--images ../shared/data/images]
        [--geometry auto [--no-photometric]] [--skip-cross]

Prints one markdown row per case: within 1 / 5 px (PCK@1, PCK@5; 150 random points, or the annotated keypoints
across instances) and where the answers came from (`position`). Uses the public API only, so the same script
measures older commits (docs/precise_transfer.md, "The dense field: measured").
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from correspondence.api import Matcher
from correspondence.io import load_keypoints

SELF = ["affc_cup_03_00000004_rgb.jpg", "affc_hammer_01_00000001_rgb.jpg", "affc_hammer_02_00000001_rgb.jpg",
        "sddino_cat0.jpg", "sddino_dog_00.jpg", "dvf_cat.jpg", "dvf_ibex.jpg"]
TURNED = ["affc_hammer_01_00000001_rgb.jpg", "affc_hammer_02_00000001_rgb.jpg", "sddino_cat0.jpg",
          "sddino_dog_00.jpg", "dvf_cat.jpg", "dvf_ibex.jpg"]
CROSS = [("sddino_cat0", "sddino_cat1"), ("sddino_cat0", "sddino_cat2"), ("sddino_cat0", "sddino_cat3"),
         ("sddino_cat1", "sddino_cat2"), ("sddino_dog_00", "sddino_dog_59"),
         ("affc_hammer_01_00000001_rgb", "affc_hammer_02_00000001_rgb")]
EXAMPLES = Path(__file__).resolve().parents[1] / "correspondence" / "data" / "examples" / "keypoints"


def points(width: int, height: int, count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(0, width, count), rng.uniform(0, height, count)], 1)


def keypoints(xy: np.ndarray) -> dict:
    return {"keypoints": [{"name": f"p{i}", "xy": [float(x), float(y)]} for i, (x, y) in enumerate(xy)]}


def row(case: str, result, truth: np.ndarray) -> str:
    error = np.linalg.norm(result.live_xy - truth, axis=1)
    where = ", ".join(f"{k} {v}" for k, v in Counter(m.position for m in result.matches).most_common())
    return (f"| {case} | {100 * (error <= 1).mean():.1f} | {100 * (error <= 5).mean():.1f} | {np.median(error):.2f} | "
            f"{error.max():.1f} | {where} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/images")
    parser.add_argument("--geometry", default=None, help="same-object mode (e.g. auto; default: soco match's none)")
    parser.add_argument("--no-photometric", action="store_true", help="with --geometry: no ECC refinement")
    parser.add_argument("--skip-cross", action="store_true", help="no cross-instance pairs (no model exists there)")
    args = parser.parse_args()
    matcher = Matcher.create("daisy", **({"geometry": args.geometry} if args.geometry else {}),
                             **({"photometric": False} if args.no_photometric else {}))
    load = lambda name: np.asarray(Image.open(args.images / name).convert("RGB"))  # noqa: E731
    print("| case | within 1 px | within 5 px | median px | max px | position |\n|---|---|---|---|---|---|")
    for name in SELF:
        image = load(name)
        xy = points(image.shape[1], image.shape[0], 150)
        print(row(f"{name} against itself", matcher(image, keypoints(xy), image), xy), flush=True)
    for name in TURNED:
        for degrees, scale in ((20, 1.0), (-10, 0.8), (5, 1.25)):
            image = load(name)
            h, w = image.shape[:2]
            warp = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), degrees, scale)
            live = cv2.warpAffine(image, warp, (w, h), borderValue=(255, 255, 255))
            xy = points(w, h, 300)
            truth = (xy - 0.5) @ warp[:, :2].T + warp[:, 2] + 0.5
            seen = ((truth > 2) & (truth < [w - 2, h - 2])).all(1)
            xy, truth = xy[seen][:150], truth[seen][:150]
            print(row(f"{name} turned {degrees} deg x{scale}", matcher(image, keypoints(xy), live), truth), flush=True)
    for demo, live in [] if args.skip_cross else CROSS:
        a, b = load_keypoints(EXAMPLES / f"{demo}.json"), load_keypoints(EXAMPLES / f"{live}.json")
        named = {p.name: p.xy for p in b.points}
        shared = [p for p in a.points if p.name in named]
        xy = np.array([p.xy for p in shared])
        truth = np.array([named[p.name] for p in shared])
        result = matcher(load(f"{demo}.jpg"), keypoints(xy), load(f"{live}.jpg"))
        print(row(f"{demo} -> {live} (annotated keypoints)", result, truth), flush=True)


if __name__ == "__main__":
    main()
