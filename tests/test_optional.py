"""Optional dependencies: one import helper, one error wording (what needed it, how to install it)."""
from __future__ import annotations

import sys

import pytest

from correspondence.errors import MissingDependencyError
from correspondence.optional import require


def test_an_installed_module_is_returned():
    assert require("json", "reading reports") is sys.modules["json"]


def test_a_missing_module_names_the_feature_and_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "open3d", None)  # import open3d -> ImportError, installed or not
    with pytest.raises(MissingDependencyError, match=r"^the open3d solver needs open3d \(pip install "
                                                     r"'soco_ros\[vision\]' or pip install open3d\); solver="):
        require("open3d", "the open3d solver", "; solver='ransac' needs nothing extra")
    with pytest.raises(MissingDependencyError, match=r"^rendering needs no_such_pkg \(pip install no_such_pkg\)$"):
        require("no_such_pkg", "rendering")


def test_the_library_uses_it_for_open3d(monkeypatch):
    import numpy as np

    from correspondence.alignment import open3d_ransac

    monkeypatch.setitem(sys.modules, "open3d", None)
    with pytest.raises(MissingDependencyError, match="the open3d solver needs open3d"):
        open3d_ransac(np.zeros((5, 3)), np.zeros((5, 3)))
