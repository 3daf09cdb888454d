"""Dense demo -> live correspondences and the guarded ICP refinement, on cases with a known answer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from correspondence.camera import CameraIntrinsics
from correspondence.coords import Convention
from correspondence.dense_transfer import DenseMatches, DenseSettings, dense_matches
from correspondence.errors import InputError
from correspondence.features import FeatureMap
from correspondence.icp import IcpSettings, masked_cloud, refine
from correspondence.preprocessing import ImageGeometry


def _fmap(features: torch.Tensor, patch: int = 14) -> FeatureMap:
    c, h, w = features.shape
    geometry = ImageGeometry(w * patch, h * patch, w * patch, h * patch, 1.0, 1.0, 0.0, 0.0, "stretch")
    return FeatureMap(features, geometry, patch, Convention.PATCH_CENTER)


def test_identical_maps_match_every_cell_to_itself():
    torch.manual_seed(0)
    fmap = _fmap(torch.randn(16, 6, 8))
    valid = torch.zeros(48, dtype=torch.bool)
    valid[10:30] = True
    found = dense_matches(fmap, valid, fmap, None, DenseSettings(top_k=0))
    assert len(found) == 20 and found.candidates == 20
    np.testing.assert_allclose(found.demo_xy, found.live_xy)
    np.testing.assert_allclose(found.cycle_px, 0.0)
    np.testing.assert_allclose(found.similarity, 1.0, atol=1e-5)


def test_shifted_map_is_found_and_ranked():
    """The live map is the demo map shifted by two cells: every interior match moves by 2 patches."""
    torch.manual_seed(1)
    demo = torch.randn(32, 6, 10)
    live = torch.randn(32, 6, 10)
    live[:, :, 2:] = demo[:, :, :-2]
    valid = torch.zeros(6, 10, dtype=torch.bool)
    valid[:, 2:6] = True
    found = dense_matches(_fmap(demo), valid.flatten(), _fmap(live), None, DenseSettings(top_k=5))
    assert len(found) == 5 and found.candidates == 24
    np.testing.assert_allclose(found.live_xy - found.demo_xy, [[28.0, 0.0]] * 5)
    assert np.all(np.diff(found.score) <= 0)


def test_live_restriction_empty_inputs_and_settings():
    torch.manual_seed(2)
    fmap = _fmap(torch.randn(8, 4, 4))
    nothing = torch.zeros(16, dtype=torch.bool)
    assert len(dense_matches(fmap, nothing, fmap, None)) == 0
    assert len(dense_matches(fmap, ~nothing, fmap, nothing)) == 0
    only = torch.zeros(16, dtype=torch.bool)
    only[5] = True
    found = dense_matches(fmap, ~nothing, fmap, only, DenseSettings(require_mutual=False, top_k=0))
    assert len(found) == 16 and np.allclose(found.live_xy, found.live_xy[0])  # everything lands on the one cell
    with pytest.raises(InputError, match="cells"):
        dense_matches(fmap, torch.ones(7, dtype=torch.bool), fmap, None)
    with pytest.raises(InputError, match="top_k"):
        DenseSettings(top_k=-1)
    with pytest.raises(InputError, match="max_cycle_px"):
        DenseSettings(max_cycle_px=float("nan"))
    assert len(DenseMatches.empty(3)) == 0


def _bumpy_depth(k: CameraIntrinsics) -> tuple[np.ndarray, np.ndarray]:
    """A curved object in front of nothing: its surface constrains all six degrees of freedom (a flat, frontal
    face would let ICP slide sideways)."""
    rows, cols = np.mgrid[0:k.height, 0:k.width]
    depth = (0.6 + 0.04 * np.sin(cols / 12.0) + 0.03 * np.cos(rows / 9.0)).astype(np.float32)
    mask = (np.abs(cols - 100) < 60) & (np.abs(rows - 80) < 50)
    return np.where(mask, depth, 0).astype(np.float32), mask


def _rigid(deg: float, t) -> np.ndarray:
    a = np.radians(deg)
    T = np.eye(4)
    T[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    T[:3, 3] = t
    return T


def test_icp_pulls_a_perturbed_pose_back_and_guards_its_moves():
    k = CameraIntrinsics(200.0, 200.0, 100.0, 80.0, 200, 160)
    depth, mask = _bumpy_depth(k)
    cloud = masked_cloud(depth, k, mask, (0.1, 2.0), 3000)
    assert 0 < len(cloud) <= 3000 and np.isfinite(cloud).all()
    truth = _rigid(6.0, [0.01, -0.005, 0.02])
    live = cloud @ truth[:3, :3].T + truth[:3, 3]
    start = _rigid(9.0, [0.016, -0.001, 0.024])  # 3 deg and ~8 mm off
    result = refine(cloud, live, start)
    assert result.accepted and result.fitness_after > result.fitness_before
    assert np.abs(result.transform - truth).max() < 2e-3
    guarded = refine(cloud, live, start, IcpSettings(max_correction_deg=0.5))
    assert not guarded.accepted and "too far" in guarded.reason
    np.testing.assert_array_equal(guarded.transform, start)  # the start pose stands
    few = refine(cloud[:5], live, start)
    assert not few.accepted and "too few" in few.reason
    # Stopped by the iteration cap while still moving: not converged, so the start pose stands.
    capped = refine(cloud, live, start, IcpSettings(max_distances=(0.03,), iterations_per_stage=1))
    assert not capped.accepted and "did not converge" in capped.reason
    np.testing.assert_array_equal(capped.transform, start)
    with pytest.raises(InputError, match="intrinsics are for"):
        masked_cloud(depth[:100], k, None, (0.1, 2.0), 100)
