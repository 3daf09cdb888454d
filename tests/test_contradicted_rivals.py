"""An ambiguous one-view search whose every rival is contradicted by the frame where its best is not is no ambiguity
(``pose_confirmation.without_contradicted_rivals``): the cleaner-turn rule (tests/test_cleaner_rival.py) seen from the
other side. Recorded on issue 26's +-30 deg run (`soco bench alignment --backbone daisy --trials 40
--functional-trials 0 --mask-source depth`) and one-view +-180 deg runs (free space of the best and of its rivals)."""
from __future__ import annotations

import numpy as np
import pytest

from correspondence.camera import CameraIntrinsics
from correspondence.pose_confirmation import ConfirmationSettings, without_contradicted_rivals
from correspondence.pose_search import Hypothesis, LiveFrame, PoseScore, PoseSearchResult

K = CameraIntrinsics(200.0, 200.0, 32.0, 32.0, 64, 64)
EXACT = LiveFrame(np.ones((64, 64)), K, np.pad(np.ones((48, 48), dtype=bool), 8), np.zeros((1, 3)), None, None)


def _ambiguous(best_fs: float, rival_fs: list[float]) -> PoseSearchResult:
    def hyp(fs, deg):
        a = np.radians(deg)
        T = np.eye(4)
        T[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
        return Hypothesis("upright", T, PoseScore(0.9, 0.9, fs, 0.05, 0.9, 0.0))
    best = hyp(best_fs, 0.0)
    rivals = tuple(hyp(fs, 90.0) for fs in rival_fs)
    return PoseSearchResult(None, best, (best,) + rivals, True, "ambiguous: ...", rivals=rivals)


@pytest.mark.parametrize("case, best, rivals, revived", [
    ("+-30 t20 stool -26 deg, best right, 90-deg rival of a near-square seat", 0.0068, [0.0248], True),
    ("+-30 t23 jug 22 deg, best right, 21-deg rival as clean", 0.0084, [0.0112], False),
    ("+-30 t5 mug -8 deg, best 63 deg off, the truth among the rivals", 0.0164, [0.0032, 0.006, 0.0476, 0.004, 0.0248],
     False),
    ("+-180 s1 t15 jug -67 deg, best right; one rival under the floor", 0.0064, [0.0192, 0.0408, 0.0388], False),
    ("+-180 s1 t29 mug -169 deg, best 180 deg off", 0.0432, [0.002, 0.0448], False),
    ("+-180 s2 t6 kettle 100 deg, best 155 deg off", 0.0356, [0.0176], False),
])
def test_recorded(case, best, rivals, revived):
    out = without_contradicted_rivals(_ambiguous(best, rivals), EXACT, ConfirmationSettings())
    assert (out.transform is not None) == revived, case
    assert out.ambiguous != revived
    if revived:
        assert out.reason.startswith("ok: the turns that explained the frame about as well put 2.5 %")


def test_off_and_rough_depth_leave_the_refusal():
    search = _ambiguous(0.0068, [0.0248])
    assert without_contradicted_rivals(search, EXACT, ConfirmationSettings(cleaner_ratio=None)).ambiguous
    rough = np.ones((64, 64))
    rough[:, ::2] += 0.003  # a stereo sensor's row-to-row noise: the free space is no evidence there
    noisy = LiveFrame(rough, K, EXACT.mask, np.zeros((1, 3)), None, None)
    assert without_contradicted_rivals(search, noisy, ConfirmationSettings()).ambiguous
