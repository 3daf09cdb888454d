"""Test fixtures. No test touches the network: downloads are disabled and the torch hub cache is private."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SOCO_SHARED_DIR", REPO.parent / "shared"))
IMAGES = SHARED / "data" / "images"
EXAMPLES = REPO / "correspondence" / "data" / "examples"


@pytest.fixture(autouse=True)
def offline_environment(tmp_path_factory, monkeypatch):
    """Every test runs offline with an empty, private torch hub cache and no weights directory."""
    monkeypatch.setenv("SOCO_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
    monkeypatch.delenv("SOCO_WEIGHTS_DIR", raising=False)


@pytest.fixture
def shared_images() -> Path:
    if not IMAGES.is_dir():
        pytest.skip(f"real photos not available: {IMAGES} is missing (the project's ../shared data folder)")
    return IMAGES
