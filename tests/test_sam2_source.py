"""SAM 2.1 mask source (Meta's ``sam2`` package): official-layout checkpoints through the weight resolver, strict
``weights_only`` loading, the prompt rules shared with SAM, and ``auto``'s preference order. Random-init Hiera tiny
(no pretrained weights are reachable here); a CPU encoder pass at SAM 2's 1024 px input takes seconds."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("sam2")

from correspondence.errors import ConfigError, CorruptCheckpointError, WeightsNotFoundError  # noqa: E402
from correspondence.sam2_source import (SAM2_SOURCES, SAM2_TRAINED_IMAGE_SIZE, Sam2MaskSource,  # noqa: E402
                                        build_sam2_model, check_image_size)
from correspondence.segmentation import (DepthForeground, Prompt, SamMaskSource, auto_mask_source,  # noqa: E402
                                         mask_source_from_name)

TINY = "sam2.1_hiera_tiny.pt"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def source_model():
    """A random-init Hiera tiny moved away from its init, so a load that kept a fresh init could not pass."""
    torch.manual_seed(0)
    model, path = build_sam2_model("tiny", random_init=True)
    assert path is None
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.01)
    return model


@pytest.fixture(scope="module")
def checkpoint(source_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("sam2") / TINY
    torch.save({"model": source_model.state_dict()}, path)  # the official file's layout: {"model": state_dict}
    return path


def test_official_sources_and_names():
    assert SAM2_SOURCES["tiny"].filename == TINY
    assert SAM2_SOURCES["large"].url == "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_large.pt"
    with pytest.raises(ConfigError, match="unknown SAM 2 model 'huge'"):
        build_sam2_model("huge")


def test_checkpoint_loads_strictly_through_the_resolver(source_model, checkpoint, monkeypatch):
    monkeypatch.setenv("SOCO_WEIGHTS_DIR", str(checkpoint.parent))
    source = Sam2MaskSource.create("tiny", allow_download=False)
    assert source.weights == str(checkpoint) and source.weights_sha256 and source.name == "sam2"
    loaded = source.predictor.model.state_dict()
    for key, value in source_model.state_dict().items():
        assert torch.equal(loaded[key], value), key


def test_missing_checkpoint_offline_names_file_and_url():
    with pytest.raises(WeightsNotFoundError, match=TINY) as info:
        Sam2MaskSource.create("tiny", allow_download=False)
    assert "dl.fbaipublicfiles.com/segment_anything_2" in str(info.value) and "SOCO_WEIGHTS_DIR" in str(info.value)


def test_checkpoint_of_another_size_is_corrupt(checkpoint, tmp_path):
    small = tmp_path / "sam2.1_hiera_small.pt"
    small.write_bytes(checkpoint.read_bytes())
    with pytest.raises(CorruptCheckpointError, match="does not fit SAM 2.1 small"):
        Sam2MaskSource.create("small", weights=small)


def test_auto_prefers_sam2_then_sam_then_weight_free(checkpoint, monkeypatch):
    source, reason = auto_mask_source(np.ones((4, 4)))
    assert isinstance(source, DepthForeground) and "SAM 2 unavailable" in reason and "SAM unavailable" in reason
    monkeypatch.setenv("SOCO_WEIGHTS_DIR", str(checkpoint.parent))
    source, reason = auto_mask_source(None)
    assert isinstance(source, Sam2MaskSource) and reason.startswith("sam2: SAM 2.1 tiny")
    assert isinstance(mask_source_from_name("sam2", weights=checkpoint), Sam2MaskSource)


def test_prompts_share_one_embedding_and_return_image_sized_masks(source_model):
    source = Sam2MaskSource.from_model(source_model, "tiny")
    assert isinstance(source, SamMaskSource)
    rgb = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    results = [source.segment(rgb, Prompt(point=(40, 30))),
               source.segment(rgb, Prompt(point=(40, 30), box=(10, 10, 70, 50))),
               source.segment(rgb, Prompt.auto())]
    assert source.embeddings_computed == 1
    assert [r.details["mode"] for r in results] == ["point", "box", "auto"]
    for r in results:
        assert r.mask.shape == (60, 80) and r.mask.dtype == bool and r.mask.any() and r.source == "sam2"
    assert results[2].details["candidates"] == 27  # the centre + 3x3 grid rule, 3 masks each
    source.segment(rgb[::-1].copy(), Prompt(point=(5, 5)))
    assert source.embeddings_computed == 2


def test_default_encoder_input_is_the_trained_1024(source_model):
    source = Sam2MaskSource.from_model(source_model, "tiny")
    assert source.image_size == SAM2_TRAINED_IMAGE_SIZE == 1024
    assert source.predictor._bb_feat_sizes == [(256, 256), (128, 128), (64, 64)]  # the package's own, for 1024


def test_a_smaller_encoder_input_is_what_the_encoder_sees_and_is_recorded():
    """``image_size`` (an explicit choice, not the default): the encoder runs on that square, the masks still come
    back at the frame's size, the prompts share one embedding, and every mask records the size."""
    source = Sam2MaskSource.create("tiny", random_init=True, image_size=128)
    inputs = []
    source.predictor.model.image_encoder.register_forward_pre_hook(lambda module, args: inputs.append(args[0].shape))
    rgb = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    results = [source.segment(rgb, Prompt(point=(40, 30), box=(10, 10, 70, 50))), source.segment(rgb, Prompt.auto())]
    assert [tuple(shape) for shape in inputs] == [(1, 3, 128, 128)] and source.embeddings_computed == 1
    for r in results:
        assert r.mask.shape == (60, 80) and r.details["image_size"] == 128
    assert source.predictor._bb_feat_sizes == [(32, 32), (16, 16), (8, 8)]


def test_encoder_input_size_is_checked():
    assert check_image_size(512) == 512
    for bad in (500, 0, 32, 512.5):
        with pytest.raises(ConfigError, match="multiple of 32"):
            check_image_size(bad)
    with pytest.raises(ConfigError, match="multiple of 32"):
        Sam2MaskSource.create("tiny", random_init=True, image_size=1000)


def test_node_parameter_sam2_image_size_reaches_the_source(monkeypatch):
    import soco_ros.parameters as P
    from soco_ros.processor import make_mask_source

    seen = []
    built = Sam2MaskSource.__new__(Sam2MaskSource)  # no model: only the arguments are looked at
    built.weights = "sam2.1_hiera_tiny.pt"
    monkeypatch.setattr(Sam2MaskSource, "create", classmethod(lambda cls, *args, **kwargs: seen.append(kwargs) or built))
    assert P.defaults()["sam2_image_size"] == SAM2_TRAINED_IMAGE_SIZE  # the default is not changed silently
    _, reason = make_mask_source({**P.defaults(), "segmentation": "sam2", "sam2_image_size": 512})
    make_mask_source({**P.defaults(), "segmentation": "auto", "sam2_image_size": 448})
    assert [kwargs["image_size"] for kwargs in seen] == [512, 448] and reason.endswith("at 512 px")
