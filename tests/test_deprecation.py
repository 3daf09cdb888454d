"""Renamed names keep working for one release, each with a DeprecationWarning that names the new one."""
from __future__ import annotations

import numpy as np
import pytest

import correspondence.segmentation as seg
from correspondence.deprecation import renamed_kwarg
from correspondence.segmentation import MaskResult, Prompt


@pytest.mark.parametrize("old, new", [("MaskProvider", "MaskSource"), ("SamProvider", "SamMaskSource"),
                                      ("PROVIDERS", "MASK_SOURCES"), ("provider_from_name", "mask_source_from_name"),
                                      ("auto_provider", "auto_mask_source")])
def test_old_segmentation_names_resolve_to_the_new_ones(old, new):
    with pytest.warns(DeprecationWarning, match=rf"'correspondence.segmentation.{old}' is renamed "
                                                rf"'correspondence.segmentation.{new}'; .* removed in 0.2"):
        assert getattr(seg, old) is getattr(seg, new)


def test_an_unknown_module_attribute_is_still_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'MaskProviderr'"):
        seg.MaskProviderr  # noqa: B018


def test_mask_result_provider_is_the_source():
    result = MaskResult(np.ones((4, 5), bool), 1.0, "depth", Prompt.auto())
    with pytest.warns(DeprecationWarning, match="'MaskResult.provider' is renamed 'MaskResult.source'"):
        assert result.provider == "depth" == result.source


def test_renamed_keyword_argument():
    assert renamed_kwarg("segmenter", "mask_source", None, "new") == "new"  # the new name alone: no warning
    with pytest.warns(DeprecationWarning, match="keyword argument 'segmenter' is renamed 'mask_source'"):
        assert renamed_kwarg("segmenter", "mask_source", "old", None) == "old"
    with pytest.raises(TypeError, match="got both 'segmenter' and its new name 'mask_source'"):
        renamed_kwarg("segmenter", "mask_source", "old", "new")
