"""A frame where neither the dense matches nor the pose search give a pose says what each found (issue 26: a stool
came back with the matches' bare reason "degenerate", naming neither the stage nor what degenerated)."""
from __future__ import annotations

import numpy as np

from correspondence.alignment import REASON_DEGENERATE, no_pose_reason, ransac_rigid


def test_collinear_matches_and_a_failed_search_are_both_named():
    """Matches whose points all lie on one line (a stool's leg, a thin rail) leave the turn about that line free:
    RANSAC refuses them as degenerate, and the words say so and carry the search's own reason."""
    t = np.linspace(0.0, 0.3, 40)
    src = np.stack([t, 0.2 * t, np.full_like(t, 0.8)], 1)
    dst = src + [0.05, 0.0, 0.02]
    result = ransac_rigid(src, dst)
    assert not result.success and result.reason == REASON_DEGENERATE and result.transform is None
    words = no_pose_reason(result, "the guarded ICP refused the fits of all 5 best proposals and no matches or "
                                   "upright pose stands without it")
    assert words.startswith("no pose: the dense matches gave none (degenerate: the matched points that agree lie on "
                            "a line")
    assert "the pose search found none (the guarded ICP refused the fits of all 5 best proposals" in words


def test_too_few_matches_are_named():
    src = np.array([[0.0, 0.0, 1.0], [0.1, 0.0, 1.0]])
    result = ransac_rigid(src, src)
    words = no_pose_reason(result, "too few depth points on the demo or live object")
    assert "not enough correspondences: too few matches with depth on both sides" in words
