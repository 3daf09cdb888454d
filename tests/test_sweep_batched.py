"""The yaw sweep batched over turns (correspondence/yaw_sweep.py: ``fit_translations``, ``place_all``,
``Placement.scores``) returns what the per-turn loop it replaced returned, bit for bit: the batching is a speed-up
(docs/multiview_demo.md, "Cost"), not a change of outcome. The oracle below is the loop as it stood at a20397d
(correspondence/yaw_sweep.py there), kept here only as the reference."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("open3d")

from scipy.spatial import cKDTree  # noqa: E402

from correspondence.world.families import make_instance  # noqa: E402
from correspondence.yaw_sweep import (FIT_DISTANCES_M, PLACE_POINTS, PLACE_STEPS_M, Placement, _DIRECTIONS,  # noqa: E402
                                      _seen, upright_rotations, yaw_sweep)
from test_pose_search import _pair  # noqa: E402


def _loop_fit(R, demo_points, live_cloud, tree, depth, intrinsics, start, distances=FIT_DISTANCES_M, hidden_m=0.01):
    t = np.asarray(start, dtype=np.float64).copy()
    rotated = demo_points @ R.T
    for distance in distances:
        moved = rotated + t
        inside, _, _, seen = _seen(moved, depth, intrinsics)
        hidden = inside & np.isfinite(seen) & (seen > 0) & (moved[:, 2] > seen + hidden_m)
        use = (moved[:, 2] > 1e-3) & ~hidden
        if use.sum() < 5:
            break
        gap, index = tree.query(moved[use], distance_upper_bound=distance)
        paired = np.isfinite(gap)
        if paired.sum() >= 5:
            t += np.median(live_cloud[index[paired]] - moved[use][paired], axis=0)
    return t


def _loop_score(p: Placement, moved):
    inside, row, col, seen = _seen(moved, p.depth, p.intrinsics)
    on_object, has_depth = p.mask[row, col] & inside, inside & np.isfinite(seen) & (seen > 0)
    agree = on_object & has_depth & (np.abs(moved[:, 2] - seen) < p.surface_m)
    contradiction = inside & ((has_depth & (moved[:, 2] < seen - p.free_space_m)) | (~on_object & ~has_depth))
    gap, index = p.live_tree.query(moved, distance_upper_bound=p.surface_m)
    coverage = len(np.unique(index[np.isfinite(gap)])) / max(min(p.live_count, len(moved)), 1)
    return 0.5 * (agree.mean() + coverage) - p.contradiction_weight * contradiction.sum() / max(int(inside.sum()), 1)


def _loop_place(R, demo_points, t, p, steps=PLACE_STEPS_M, max_moves=8):
    rotated = demo_points[::max(1, -(-len(demo_points) // PLACE_POINTS))] @ R.T
    t = np.asarray(t, dtype=np.float64).copy()
    best = _loop_score(p, rotated + t)
    for step in steps:
        back = None
        for _ in range(max_moves):
            values = [-np.inf if k == back else _loop_score(p, rotated + t + step * d)
                      for k, d in enumerate(_DIRECTIONS)]
            k = int(np.argmax(values))
            if values[k] <= best:
                break
            best, t, back = values[k], t + step * _DIRECTIONS[k], (k + 3) % 6
    return t


def _loop_sweep(demo_points, live_cloud, depth, intrinsics, up, step_deg, mask):
    tree = cKDTree(live_cloud)
    placement = Placement(depth, np.asarray(mask, bool), intrinsics, tree, len(live_cloud))
    out = []
    for R in upright_rotations(up[0], up[1], step_deg):
        t = _loop_fit(R, demo_points, live_cloud, tree, depth, intrinsics, live_cloud.mean(0) - R @ demo_points.mean(0))
        t = _loop_fit(R, demo_points, live_cloud, tree, depth, intrinsics, _loop_place(R, demo_points, t, placement),
                      FIT_DISTANCES_M[-3:])
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = R, t
        out.append(T)
    return out


@pytest.mark.parametrize("category, index, yaw", [("kettle", 0, -84.0), ("chair", 1, 135.0)])
def test_the_batched_sweep_is_the_per_turn_loop_bit_for_bit(category, index, yaw):
    demo_points, _, live, _, up = _pair(make_instance(category, index), yaw)
    batched = yaw_sweep(demo_points, live.cloud, live.depth, live.intrinsics, up, 15.0, live.mask)
    loop = _loop_sweep(demo_points, live.cloud, live.depth, live.intrinsics, up, 15.0, live.mask)
    assert len(batched) == len(loop) == 24
    for a, b in zip(batched, loop):
        assert np.array_equal(a, b)


def test_placement_scores_are_each_placements_score():
    demo_points, _, live, truth, _ = _pair(make_instance("kettle", 1), 70.0)
    p = Placement(live.depth, live.mask, live.intrinsics, cKDTree(live.cloud), len(live.cloud))
    moved = demo_points[::4] @ truth[:3, :3].T + truth[:3, 3]
    shifts = np.array([[0, 0, 0], [0.03, 0, 0], [0, -0.05, 0.02], [0, 0, -0.1]])  # the truth, slid, in free space
    batch = p.scores(moved[None] + shifts[:, None])
    assert batch.tolist() == [_loop_score(p, moved + s) for s in shifts]
    assert batch[0] == batch.max() and batch[3] < batch[0] - 0.5  # the truth best; free space costs


def test_the_live_cloud_answers_as_its_kd_tree():
    """LiveCloud's occupancy grid only skips points with no live neighbour within the radius: every answer is the
    tree's, at every radius the sweep uses, for points near the surface, far off it and on cell boundaries."""
    from correspondence.yaw_sweep import LiveCloud

    rng = np.random.default_rng(5)
    cloud = rng.uniform(-0.1, 0.1, (800, 3)) * [1, 1, 0.05] + [0, 0, 0.7]  # a slab, like a seen surface
    live = LiveCloud(cloud)
    near = cloud[rng.integers(0, len(cloud), 3000)] + rng.normal(0, 0.01, (3000, 3))
    far = rng.uniform(-0.4, 0.4, (3000, 3)) + [0, 0, 0.7]
    edges = cloud[:200] + [0.006, 0.0, 0.0]  # exactly one radius away along an axis
    points = np.vstack([near, far, edges])
    for radius in (0.006, 0.01, 0.015, 0.025, 0.04, 0.06):
        gap, index = live.query(points, distance_upper_bound=radius)
        expected_gap, expected_index = live.tree.query(points, distance_upper_bound=radius)
        assert np.array_equal(gap, expected_gap) and np.array_equal(index, expected_index)
        assert np.isfinite(gap).any() and not np.isfinite(gap).all()
    assert any(g is not None for g in live._grids.values())  # the grid was used, not only the tree
