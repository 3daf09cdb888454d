"""Tracking the live mask between frames (correspondence/tracking.py): a textured patch moving across a static
background, whose true mask is known in every frame; the tracker counts its full segmentations."""
from __future__ import annotations

import numpy as np
import pytest

from correspondence.api import Matcher
from correspondence.camera import CameraIntrinsics
from correspondence.demo_spec import DemoSpec
from correspondence.errors import ConfigError
from correspondence.io import KeypointSet, NamedPoint
from correspondence.pipeline import PipelineSettings, TransferPipeline
from correspondence.segmentation import DepthForeground
from correspondence.tracking import MaskTracker, TrackSettings

SIZE, PATCH = 224, 80


def texture(seed: int) -> np.ndarray:
    blocks = np.random.default_rng(seed).integers(0, 256, (PATCH // 16, PATCH // 16, 3), dtype=np.uint8)
    return np.kron(blocks, np.ones((16, 16, 1), dtype=np.uint8))


_yy, _xx = np.mgrid[:SIZE, :SIZE]
BACKGROUND = np.stack([60 + _xx // 2, 80 + _yy // 3, 140 - _xx // 4], -1).astype(np.uint8)  # smooth: no object


def frame(x: int, y: int, with_object: bool = True):
    rgb = BACKGROUND.copy()
    depth = np.full((SIZE, SIZE), 1.5, np.float32)
    mask = np.zeros((SIZE, SIZE), bool)
    if with_object:
        rgb[y:y + PATCH, x:x + PATCH] = texture(1)
        depth[y:y + PATCH, x:x + PATCH] = 0.8
        mask[y:y + PATCH, x:x + PATCH] = True
    return rgb, depth, mask


@pytest.fixture(scope="module")
def daisy():
    return Matcher.create("daisy", size=SIZE, cache_size=2)


def pipeline(matcher, track):
    rgb, depth, mask = frame(72, 72)
    keypoints = KeypointSet(tuple(NamedPoint(f"k{i}", (80.0 + 20 * i, 90.0 + 15 * i)) for i in range(4)))
    demo = DemoSpec(None, rgb, depth, CameraIntrinsics.from_fov(SIZE, SIZE, 45.0), mask, keypoints, None, None)
    source = DepthForeground((0.1, 1.0))
    return TransferPipeline(demo, matcher, PipelineSettings(track=track), source), source


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_tracked_masks_follow_the_object_with_one_segmentation(daisy, monkeypatch):
    tracked, source = pipeline(daisy, TrackSettings(every=0))
    cam = CameraIntrinsics.from_fov(SIZE, SIZE, 45.0)
    carried = []  # the key frame's cells are gathered once per key frame, not on every tracked frame
    original = MaskTracker._carried_cells
    monkeypatch.setattr(MaskTracker, "_carried_cells", lambda self: carried.append(1) or original(self))
    for step in range(5):
        rgb, depth, truth = frame(40 + 14 * step, 50 + 7 * step)  # one cell right, half a cell down per frame
        result = tracked.process(rgb, depth, cam)
        assert iou(result.mask.mask, truth) > 0.8, step  # the fit is good to about half a 14 px cell
        assert result.mask.details["tracked"] is (step > 0)
    assert tracked.tracker.segmentations == 1 and tracked.tracker.frames == 5 and len(carried) == 1


def test_schedule_and_lost_object_segment_again(daisy):
    tracked, source = pipeline(daisy, TrackSettings(every=2))
    cam = CameraIntrinsics.from_fov(SIZE, SIZE, 45.0)
    whys = []
    for step in range(4):
        rgb, depth, _ = frame(40 + 14 * step, 50)
        whys.append(tracked.process(rgb, depth, cam).mask.details.get("why"))
    assert whys == ["first frame", None, "schedule (every 2 frames)", None]
    rgb, depth, _ = frame(0, 0, with_object=False)
    result = tracked.process(rgb, depth, cam)
    assert result.mask is None and result.alignment.reason.startswith("object not found")
    rgb, depth, truth = frame(130, 130)  # back, somewhere else: a fresh segmentation, not a stale track
    result = tracked.process(rgb, depth, cam)
    assert not result.mask.details["tracked"] and iou(result.mask.mask, truth) > 0.95


def test_a_box_the_tracker_cannot_explain_triggers_a_segmentation(daisy):
    tracked, _ = pipeline(daisy, TrackSettings(every=0))
    cam = CameraIntrinsics.from_fov(SIZE, SIZE, 45.0)
    tracked.process(*frame(20, 20)[:2], cam)
    x0, y0, x1, y1 = tracked.tracker._box
    tracked.tracker._box = (x0 + 100, y0 + 100, x1 + 100, y1 + 100)  # a drifted track
    rgb, depth, truth = frame(20, 20)
    result = tracked.process(rgb, depth, cam)
    assert not result.mask.details["tracked"] and result.mask.details["why"].startswith("correspondence box moved")
    assert iou(result.mask.mask, truth) > 0.95


def test_settings_are_checked():
    with pytest.raises(ConfigError):
        TrackSettings(every=-1)
    with pytest.raises(ConfigError):
        TrackSettings(box_slack=-1.0)


def test_node_parameter_track_every_turns_tracking_on():
    import soco_ros.parameters as P
    from soco_ros.processor import pipeline_settings

    assert pipeline_settings(P.defaults()).track is None  # default: segment every frame
    assert pipeline_settings({**P.defaults(), "track_every": 5}).track == TrackSettings(every=5)
