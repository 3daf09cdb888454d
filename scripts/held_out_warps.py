"""Held-out same-object check (issue 21): photos the bench never uses, warped exactly, ours against expert SIFT.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python scripts/held_out_warps.py [--out bench_out/held_out] [--quick]
        [--only TEXT] [--unrelated N [--unrelated-only]]

Photos: scikit-image's bundled data (astronaut, coffee, chelsea, rocket, camera, immunohistochemistry, coins,
clock, the left motorcycle view) and scikit-learn's two sample images (china, flower); none is in
``../shared`` or UMD-i. A *small* regime adds copies resized to a shorter side of 118-250 px (the tiny UMD-i
crops of ``soco bench homography``). Each pair: a homography = mild perspective (corner shift 5 % of the side),
rotation 0-180 deg in 15-deg steps (either sense), scale 0.25-4 log-spaced, a translation, then gamma / gain /
blur / noise / JPEG (:func:`correspondence.benchmarks.homography_pairs.photometric`); 150 random demo points whose
exact live position lies inside the live view. Upright pairs (0 deg, 1x) are also run with ``--search none`` to
measure what the search costs there. ``--unrelated N`` adds N pairs of *different* photos (one against another
warped the same way, small copies among them): every point accepted there is a mistake.

Methods: OpenCV SIFT (expert settings) + ratio + mutual + MAGSAC++ (``homography_methods.expert``) and ours,
``daisy`` with ``--geometry auto`` (the same-object setting). Writes ``results.json`` (every pair), ``results.md``
(summary, pairs where we trail SIFT, upright cost) and ``pck5_pairs.png`` (ours against SIFT per pair).
A script, not a test: it takes minutes.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from correspondence.benchmarks.homography_methods import OursRow, expert, run_ours  # noqa: E402
from correspondence.benchmarks.homography_pairs import (Pair, WarpSettings, photometric, project,  # noqa: E402
                                                        random_homography, to_continuous)

ANGLES = tuple(range(0, 181, 15))  # |rotation| in degrees
SCALES = tuple(float(s) for s in np.geomspace(0.25, 4.0, 9))  # 0.25 ... 4, a half octave apart
SIFT = "OpenCV SIFT (expert) + ratio + mutual + MAGSAC++"
OURS = "daisy, --geometry auto"
OURS_NONE = "daisy, --geometry auto --search none"


def photos() -> dict[str, np.ndarray]:
    """Held-out RGB photos (grey ones made RGB), by name."""
    import skimage.data as data
    out = {}
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry", "coins", "clock"):
        out[name] = getattr(data, name)()
    out["motorcycle"] = data.stereo_motorcycle()[0]
    try:
        from sklearn.datasets import load_sample_images
        for name, image in zip(("china", "flower"), load_sample_images().images):
            out[name] = image
    except ImportError:  # scikit-learn is optional here
        pass
    return {k: (np.repeat(v[..., None], 3, 2) if v.ndim == 2 else v[..., :3]).astype(np.uint8) for k, v in out.items()}


def small(rgb: np.ndarray, side: int) -> np.ndarray:
    """``rgb`` resized (area interpolation) to a shorter side of ``side`` px."""
    factor = side / min(rgb.shape[:2])
    size = (max(1, round(rgb.shape[1] * factor)), max(1, round(rgb.shape[0] * factor)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def warp_pair(rng: np.random.Generator, name: str, group: str, rgb: np.ndarray, degrees: float, scale: float,
              points: int, settings: WarpSettings) -> Pair | None:
    """The exact warp of ``rgb`` and ``points`` random demo points whose live position is in view (None if
    fewer than 20 are)."""
    height, width = rgb.shape[:2]
    h_cv = random_homography(rng, width, height, settings, degrees, scale)
    h = to_continuous(h_cv)
    query = np.stack([rng.uniform(0, width, 20 * points), rng.uniform(0, height, 20 * points)], 1)
    truth = project(h, query)
    inside = (truth >= 2).all(1) & (truth[:, 0] < width - 2) & (truth[:, 1] < height - 2)
    if inside.sum() < 20:
        return None
    query, truth = query[inside][:points], truth[inside][:points]
    shrink = math.sqrt(abs(np.linalg.det(h_cv[:2, :2])))
    demo = cv2.GaussianBlur(rgb, (0, 0), 0.5 * math.sqrt(1 / shrink ** 2 - 1)) if shrink < 0.9 else rgb
    warped = cv2.warpPerspective(demo, h_cv, (width, height), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return Pair(f"{name} rot {degrees:+.0f} x{scale:.2f}", group, rgb, photometric(rng, warped, settings), query,
                truth, "warp", h, degrees, scale)


def design(seed: int, quick: bool) -> list[Pair]:
    """Every photo at several (angle, scale) cells so that all 13 angles x 9 scales are covered in turn, the
    small regime likewise, and every photo upright once."""
    rng = np.random.default_rng(seed)
    settings = WarpSettings(perspective=0.05, translation=0.05)
    images = photos()
    names = sorted(images)
    cells = [(a, s) for s in SCALES for a in ANGLES]
    order = rng.permutation(len(cells))
    per_photo = 2 if quick else 5
    pairs: list[Pair] = []
    k = 0
    for name in names:
        for _ in range(per_photo):
            angle, scale = cells[order[k % len(cells)]]
            k += 1
            pair = warp_pair(rng, name, "photos", images[name], float(rng.choice([-1, 1]) * angle), scale, 150,
                             settings)
            if pair is not None:
                pairs.append(pair)
    for j, name in enumerate(names[: (4 if quick else len(names))]):
        side = int(rng.integers(118, 251))
        for _ in range(per_photo // 2 + 1):
            angle, scale = cells[order[k % len(cells)]]
            k += 1
            pair = warp_pair(rng, f"{name}@{side}", "small", small(images[name], side),
                             float(rng.choice([-1, 1]) * angle), scale, 150, settings)
            if pair is not None:
                pairs.append(pair)
    for name in names[: (3 if quick else len(names))]:
        pair = warp_pair(rng, name, "upright", images[name], 0.0, 1.0, 150, settings)
        if pair is not None:
            pairs.append(pair)
    return pairs


def unrelated(seed: int, count: int) -> list[Pair]:
    """``count`` pairs of different photos: the demo one photo (every other one a small copy, 118-250 px), the live
    another one warped like the design's pairs (any rotation, 0.25-4x). Every accepted point is a mistake."""
    rng = np.random.default_rng(seed + 1)
    settings = WarpSettings(perspective=0.05, translation=0.05)
    images = photos()
    names = sorted(images)
    pairs: list[Pair] = []
    for i in range(count):
        a, b = names[i % len(names)], names[(i + 1 + i // len(names)) % len(names)]
        demo = images[a] if i % 2 == 0 else small(images[a], int(rng.integers(118, 251)))
        live = images[b] if i % 3 else small(images[b], int(rng.integers(118, 251)))
        angle, scale = float(rng.choice([-1, 1]) * rng.choice(ANGLES)), float(rng.choice(SCALES))
        warped = warp_pair(rng, b, "unrelated", live, angle, scale, 20, settings)
        if warped is None:
            continue
        query = np.stack([rng.uniform(0, demo.shape[1], 50), rng.uniform(0, demo.shape[0], 50)], 1)
        pairs.append(Pair(f"{a}{'' if i % 2 == 0 else '@' + str(min(demo.shape[:2]))} vs {warped.name}", "unrelated",
                          demo, warped.live, query, np.full_like(query, np.nan), "unrelated", None, angle, scale))
    return pairs


def pck5(err: np.ndarray) -> float:
    return float(100.0 * np.mean(err < 5.0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench_out/held_out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="fewer pairs (a smoke run)")
    parser.add_argument("--only", default=None, help="run only pairs whose name contains this")
    parser.add_argument("--unrelated", type=int, default=0,
                        help="also this many pairs of different photos (every accepted point is wrong)")
    parser.add_argument("--unrelated-only", action="store_true", help="only the unrelated pairs")
    parser.add_argument("--shard", default=None, metavar="K/N",
                        help="run only every N-th pair from the K-th (0-based; parallel processes); --merge joins them")
    parser.add_argument("--merge", nargs="+", type=Path, default=None, metavar="DIR",
                        help="no run: the report of the shards' results.json in these folders, written to --out")
    parser.add_argument("--upright-cost", type=int, default=0, metavar="N",
                        help="only time the upright pairs, N rounds, rows alternated (ECC refinement on / off, "
                             "--search none without it) and write upright_cost.md")
    args = parser.parse_args()
    from correspondence.api import Matcher
    from correspondence.keypoint_matching import MatchSettings
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        records = [r for folder in args.merge for r in json.loads((folder / "results.json").read_text())]
        order = {p.name + p.group: i for i, p in enumerate(design(args.seed, args.quick) +
                                                           unrelated(args.seed, args.unrelated))}
        report(sorted(records, key=lambda r: order[r["pair"] + r["group"]]), out)
        return 0
    pairs = [] if args.unrelated_only else design(args.seed, args.quick)
    pairs += unrelated(args.seed, args.unrelated)
    if args.shard:
        k, n = (int(v) for v in args.shard.split("/"))
        pairs = pairs[k::n]
    if args.only:
        pairs = [p for p in pairs if args.only in p.name]
    extractor = Matcher.create("daisy", size=448, cache_size=0).extractor
    if args.upright_cost:
        return upright_cost([p for p in pairs if p.group == "upright"], extractor, args.upright_cost, out)
    auto = [OursRow(OURS, MatchSettings(geometry="auto"))]
    upright_rows = auto + [OursRow(OURS_NONE, MatchSettings(geometry="auto", search="none"))]
    records = []
    for i, pair in enumerate(pairs):
        sift = expert(pair, "sift")
        rows = upright_rows if pair.group == "upright" else auto
        ours = run_ours(pair, extractor, rows)
        record = {"pair": pair.name, "group": pair.group, "size": list(pair.demo.shape[1::-1]),
                  "rotation_deg": pair.rotation_deg, "scale": pair.scale, "points": len(pair.query_xy),
                  "methods": {}}
        for label, prediction in [(SIFT, sift)] + [(row.label, p) for row, p in zip(rows, ours)]:
            if pair.group == "unrelated":
                answered = int(np.isfinite(prediction.xy).all(1).sum())
                record["methods"][label] = {"accepted": answered, "seconds": prediction.seconds,
                                            **{k: v for k, v in prediction.info.items() if k != "timings_s"}}
                continue
            err = np.linalg.norm(prediction.xy - pair.truth_xy, axis=1)
            err = np.where(np.isfinite(err), err, np.inf)
            record["methods"][label] = {"pck@5": pck5(err), "pck@1": float(100 * np.mean(err < 1)),
                                        "median_px": float(np.median(err)), "seconds": prediction.seconds,
                                        **{k: v for k, v in prediction.info.items() if k != "timings_s"},
                                        "timings_s": prediction.info.get("timings_s")}
        records.append(record)
        m = record["methods"]
        if pair.group == "unrelated":
            print(f"[{i + 1}/{len(pairs)}] {pair.name} (unrelated): accepted SIFT {m[SIFT]['accepted']}, ours "
                  f"{m[OURS]['accepted']} of {len(pair.query_xy)}", flush=True)
            continue
        print(f"[{i + 1}/{len(pairs)}] {pair.name} ({pair.group}, {pair.demo.shape[1]}x{pair.demo.shape[0]}): "
              f"SIFT {m[SIFT]['pck@5']:.1f} / {m[SIFT]['median_px']:.2f} px, ours {m[OURS]['pck@5']:.1f} / "
              f"{m[OURS]['median_px']:.2f} px", flush=True)
    report(records, out)
    return 0


def upright_cost(pairs: list[Pair], extractor, rounds: int, out: Path) -> int:
    """Seconds after the two encodings per upright pair and row, the rows in a rotating order each round (the
    machine's load drifts), and the median over pairs of each row's median over rounds."""
    from correspondence.geometry2d import GeometrySettings
    from correspondence.keypoint_matching import MatchSettings
    rows = [OursRow(OURS, MatchSettings(geometry="auto")),
            OursRow(f"{OURS} --no-photometric", MatchSettings(geometry=GeometrySettings("auto", photometric=False))),
            OursRow(f"{OURS_NONE} --no-photometric",
                    MatchSettings(geometry=GeometrySettings("auto", photometric=False), search="none"))]
    seconds = {row.label: [[] for _ in pairs] for row in rows}
    for k in range(rounds):
        for i, pair in enumerate(pairs):
            order = rows[k % len(rows):] + rows[:k % len(rows)]
            for row, prediction in zip(order, run_ours(pair, extractor, order)):
                seconds[row.label][i].append(prediction.seconds - prediction.info["timings_s"]["features"])
        print(f"round {k + 1}/{rounds}", flush=True)
    medians = {label: float(np.median([np.median(s) for s in per])) for label, per in seconds.items()}
    base = medians[rows[2].label]
    lines = [f"**Upright cost** ({len(pairs)} pairs x {rounds} rounds, seconds after the two encodings, median)", "",
             "| setting | seconds | / `--search none --no-photometric` |", "|---|---|---|"]
    lines += [f"| `{label}` | {value:.3f} | {value / base:.2f} |" for label, value in medians.items()]
    (out / "upright_cost.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


def _fmt(x: float) -> str:
    return "inf" if not np.isfinite(x) else f"{x:.2f}"


def report(records: list[dict], out: Path) -> None:
    wrong = [r for r in records if r["group"] == "unrelated"]
    records = [r for r in records if r["group"] != "unrelated"]
    lines = ["| group | method | pairs | mean PCK@5 | pairs >= 95 % | median of pair medians (px) | worst pair |",
             "|---|---|---|---|---|---|---|"]
    for group in ("photos", "small", "upright", "all"):
        chosen = [r for r in records if group == "all" or r["group"] == group]
        if not chosen:
            continue
        for label in (SIFT, OURS):
            values = [r["methods"][label]["pck@5"] for r in chosen]
            medians = [r["methods"][label]["median_px"] for r in chosen]
            lines.append(f"| {group} | {label} | {len(chosen)} | {np.mean(values):.1f} | "
                         f"{sum(v >= 95 for v in values)} / {len(values)} | {_fmt(float(np.median(medians)))} | "
                         f"{min(values):.1f} |")
    if wrong:
        lines += ["", f"**Unrelated pairs** ({len(wrong)}, {sum(r['points'] for r in wrong)} points; every accepted "
                      f"point is wrong): " + ", ".join(
                          f"{label} {sum(r['methods'][label]['accepted'] for r in wrong)} accepted "
                          f"({sum(r['methods'][label]['accepted'] > 0 for r in wrong)} pairs)" for label in (SIFT, OURS))]
    polished = [r["methods"][OURS].get("geometry", {}).get("photometric") for r in records]
    ran = [p for p in polished if p]
    lines += ["", f"**Photometric (ECC) refinement** of `{OURS}`: accepted on {sum(p['accepted'] for p in ran)} of "
                  f"{len(ran)} verified models (median {np.median([p['seconds'] for p in ran]) if ran else 0:.3f} s)"]
    trail = [r for r in records if r["methods"][OURS]["pck@5"] < 95 or (
        r["methods"][SIFT]["pck@5"] >= 95 and r["methods"][OURS]["median_px"] > r["methods"][SIFT]["median_px"])]
    lines += ["", f"**Pairs where ours < 95 % PCK@5, or median error above SIFT's while SIFT >= 95 %**: {len(trail)}",
              "", "| pair | size | SIFT PCK@5 | SIFT median | ours PCK@5 | ours median | search (deg, scale, support) "
              "| model (support) |", "|---|---|---|---|---|---|---|---|"]
    for r in trail:
        s, o = r["methods"][SIFT], r["methods"][OURS]
        found = o.get("search") or {}
        geometry = o.get("geometry") or {}
        lines.append(f"| {r['pair']} | {r['size'][0]}x{r['size'][1]} | {s['pck@5']:.1f} | {_fmt(s['median_px'])} | "
                     f"{o['pck@5']:.1f} | {_fmt(o['median_px'])} | {found.get('degrees', '-')}, "
                     f"{found.get('scale', '-')}, {found.get('support', 0):.2f} | {geometry.get('model', '-')} "
                     f"({geometry.get('support') or 0:.2f}) {'' if geometry.get('success') else 'refused'} |")
    upright = [r for r in records if r["group"] == "upright"]
    if upright:
        def matching(r, label):
            t = r["methods"][label]["timings_s"] or {}
            return sum(v for k, v in t.items() if k != "features")
        a = [matching(r, OURS) for r in upright]
        b = [matching(r, OURS_NONE) for r in upright]
        lines += ["", f"**Upright cost** ({len(upright)} pairs, seconds after the two encodings, median): "
                      f"`auto` {np.median(a):.3f} s, `--search none` {np.median(b):.3f} s, ratio "
                      f"{np.median(a) / max(np.median(b), 1e-9):.2f}; PCK@5 `--search none` "
                      f"{np.mean([r['methods'][OURS_NONE]['pck@5'] for r in upright]):.1f}"]
    (out / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps(records + wrong, indent=1, default=float), encoding="utf-8")
    print("\n".join(lines))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 5))
    for group, marker in (("photos", "o"), ("small", "s"), ("upright", "^")):
        chosen = [r for r in records if r["group"] == group]
        ax.scatter([r["methods"][SIFT]["pck@5"] for r in chosen], [r["methods"][OURS]["pck@5"] for r in chosen],
                   marker=marker, label=group, alpha=0.7)
    ax.plot([0, 100], [0, 100], "k:", lw=1)
    ax.axhline(95, color="r", lw=0.5)
    ax.set_xlabel("expert SIFT + MAGSAC++ PCK@5 (%)")
    ax.set_ylabel("daisy --geometry auto PCK@5 (%)")
    ax.set_title(f"held-out warps, {time.strftime('%Y-%m-%d')}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "pck5_pairs.png", dpi=100)


if __name__ == "__main__":
    raise SystemExit(main())
