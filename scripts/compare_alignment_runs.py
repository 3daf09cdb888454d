"""Compare two ``soco bench alignment`` runs trial by trial (docs/multiview_demo.md, "Cost"): a speed-up must not
change outcomes. ``PYTHONPATH=. python scripts/compare_alignment_runs.py BEFORE/alignment.json AFTER/alignment.json``
prints, per trial both runs hold (same seed: the same scenes), whether success, the rotation error (to
``--tolerance-deg``), the pose source, the chosen demo view and the reason agree, then each run's alignment-stage
median / p95 (ms) over those trials; exit status 1 when any trial differs."""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

FIELDS = ("success", "demo_view", "pose_source", "reason")


def _rows(path: str) -> dict[tuple, dict]:
    rows = json.load(open(path, encoding="utf-8"))["rows"]
    return {(r["trial"], r["kind"], r["mask_source"]): r for r in rows}


def differences(a: dict, b: dict, tolerance_deg: float) -> list[str]:
    """What differs between one trial's two rows (empty: the same outcome)."""
    out = [f"{f}: {a.get(f)!r} -> {b.get(f)!r}" for f in FIELDS if a.get(f) != b.get(f)]
    ra, rb = a.get("rotation_error_deg"), b.get("rotation_error_deg")
    if (ra is None) != (rb is None) or (ra is not None and abs(ra - rb) > tolerance_deg):
        out.append(f"rotation error: {ra} -> {rb}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--tolerance-deg", type=float, default=1e-6)
    args = parser.parse_args()
    before, after = _rows(args.before), _rows(args.after)
    common = sorted(before.keys() & after.keys())
    changed = 0
    print("| trial | category | yaw (deg) | success | rot. err (deg) | view | alignment ms before / after | same |")
    print("|---|---|---|---|---|---|---|---|")
    for key in common:
        a, b = before[key], after[key]
        diff = differences(a, b, args.tolerance_deg)
        changed += bool(diff)
        err = a.get("rotation_error_deg")
        print(f"| {key[0]} | {a['category']} | {a['yaw_deg']:.0f} | {a['success']} | "
              f"{'-' if err is None else f'{err:.2f}'} | {a.get('demo_view')} | "
              f"{1000 * a['timings_s'].get('alignment', 0):.0f} / {1000 * b['timings_s'].get('alignment', 0):.0f} | "
              f"{'yes' if not diff else '; '.join(diff)} |")
    print(f"\n{len(common)} trials in both runs, {changed} with another outcome")
    for name, rows in (("before", before), ("after", after)):
        times = np.array([1000 * rows[k]["timings_s"].get("alignment", 0.0) for k in common])
        print(f"{name}: alignment median {np.median(times):.0f} ms, p95 {np.percentile(times, 95):.0f} ms")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
