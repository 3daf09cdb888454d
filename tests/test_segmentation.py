"""Mask sources: SAM on a tiny random-init model in the official key layout, depth, GrabCut, given masks."""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

import correspondence.sam_source as sam_source
from correspondence.errors import ConfigError, CorruptCheckpointError, InputError, WeightsNotFoundError
from correspondence.segmentation import (DepthForeground, GivenMask, GrabCutBox, MaskResult, MaskSource, NoMaskError,
                                         Prompt, SamMaskSource, auto_mask_source, choose_auto_mask,
                                         mask_source_from_name)

segment_anything = pytest.importorskip("segment_anything")
from segment_anything.modeling import (ImageEncoderViT, MaskDecoder, PromptEncoder, Sam,  # noqa: E402
                                       TwoWayTransformer)

SAM_B = "sam_vit_b_01ec64.pth"
SAM_B_URL = "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"


def build_tiny_sam(checkpoint=None, img_size: int = 64, dim: int = 32) -> Sam:
    """The package's own modules at toy size: the predictor resizes to ``image_encoder.img_size`` (64 here)."""
    assert checkpoint is None
    sam = Sam(
        image_encoder=ImageEncoderViT(img_size=img_size, patch_size=16, embed_dim=32, depth=1, num_heads=1,
                                      mlp_ratio=2, out_chans=dim, qkv_bias=True,
                                      norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
                                      window_size=2, global_attn_indexes=(0,)),
        prompt_encoder=PromptEncoder(embed_dim=dim, image_embedding_size=(img_size // 16, img_size // 16),
                                     input_image_size=(img_size, img_size), mask_in_chans=4),
        mask_decoder=MaskDecoder(num_multimask_outputs=3,
                                 transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2),
                                 transformer_dim=dim, iou_head_depth=2, iou_head_hidden_dim=32),
    )
    return sam.eval()


@pytest.fixture(scope="module")
def source_sam() -> Sam:
    """A tiny SAM moved away from its init (pos_embed and rel_pos start at zero), so a load that kept the
    fresh init could not pass for a successful one."""
    torch.manual_seed(0)
    sam = build_tiny_sam()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in sam.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    return sam


@pytest.fixture
def tiny_registry(monkeypatch):
    """The package's ``sam_model_registry['vit_b']`` builds the tiny architecture (same dict the source uses)."""
    from segment_anything import sam_model_registry

    monkeypatch.setitem(sam_model_registry, "vit_b", build_tiny_sam)


@pytest.fixture
def sam_checkpoint(source_sam, tmp_path):
    path = tmp_path / SAM_B
    torch.save(source_sam.state_dict(), path)  # official layout: image_encoder.* / prompt_encoder.* / mask_decoder.*
    return path


def image(seed: int = 0, shape=(48, 64, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_official_layout_keys(source_sam):
    keys = set(source_sam.state_dict())
    assert {"image_encoder.patch_embed.proj.weight", "image_encoder.blocks.0.attn.rel_pos_h",
            "image_encoder.neck.0.weight", "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
            "mask_decoder.iou_prediction_head.layers.0.weight"} <= keys
    assert not any(k.startswith(("pixel_mean", "pixel_std")) for k in keys)  # non-persistent, as in the official files


def test_sam_checkpoint_loads_through_resolver_and_reproduces_source(source_sam, sam_checkpoint, tiny_registry,
                                                                     monkeypatch):
    calls = {"resolve": 0, "load": 0}
    real_resolve, real_load = sam_source.resolve_weights, sam_source.load_state_dict

    def spy_resolve(*args, **kwargs):
        calls["resolve"] += 1
        return real_resolve(*args, **kwargs)

    def spy_load(path):
        calls["load"] += 1
        return real_load(path)

    monkeypatch.setattr(sam_source, "resolve_weights", spy_resolve)  # where the SAM source looks them up
    monkeypatch.setattr(sam_source, "load_state_dict", spy_load)
    source = SamMaskSource.create("vit_b", weights=sam_checkpoint)
    assert calls == {"resolve": 1, "load": 1}
    assert source.name == "sam" and isinstance(source, MaskSource)
    assert source.weights == str(sam_checkpoint) and source.weights_sha256

    reference = SamMaskSource.from_model(source_sam)
    img = image(0)
    for prompt in (Prompt(point=(20.5, 30.0)), Prompt(box=(8, 6, 50, 40)), Prompt.auto()):
        got, want = source.segment(img, prompt), reference.segment(img, prompt)
        assert isinstance(got, MaskResult)
        assert got.mask.shape == img.shape[:2] and got.mask.dtype == bool and got.mask.any()
        assert got.source == "sam" and got.prompt == prompt
        assert np.array_equal(got.mask, want.mask) and got.score == pytest.approx(want.score)
        assert got.details["weights_sha256"] == source.weights_sha256
    assert got.details["mode"] == "auto" and got.details["candidates"] == 27


def test_sam_checkpoint_found_in_weights_dir(sam_checkpoint, tiny_registry, monkeypatch):
    monkeypatch.setenv("SOCO_WEIGHTS_DIR", str(sam_checkpoint.parent))
    source = SamMaskSource.create("vit_b")
    assert source.weights == str(sam_checkpoint)
    source, reason = auto_mask_source()
    assert isinstance(source, SamMaskSource) and reason.startswith("sam:")


def test_sam_embedding_computed_once_per_image(source_sam):
    source = SamMaskSource.from_model(source_sam)
    passes = []
    hook = source.predictor.model.image_encoder.register_forward_hook(lambda *a: passes.append(1))
    try:
        first, second = image(0), image(1)
        source.segment(first, Prompt(point=(10, 10)))
        result = source.segment(first, Prompt(box=(5, 5, 40, 30)))
        assert len(passes) == 1 and not result.details["embedding_computed"]
        source.segment(first.copy(), Prompt.auto())  # same content, another array: still cached
        assert len(passes) == 1
        result = source.segment(second, Prompt(point=(10, 10)))
        assert len(passes) == 2 and result.details["embedding_computed"]
        source.segment(second, Prompt.auto())
        assert len(passes) == 2 and source.embeddings_computed == 2
    finally:
        hook.remove()


def test_sam_accepts_grayscale_and_rgba(source_sam):
    source = SamMaskSource.from_model(source_sam)
    gray = image(2)[..., 0]
    rgba = np.dstack([image(3), np.full((48, 64), 255, np.uint8)])
    for img in (gray, rgba):
        assert source.segment(img, Prompt(point=(30, 20))).mask.shape == (48, 64)


def test_missing_sam_checkpoint_offline_names_file_url_and_env():
    with pytest.raises(WeightsNotFoundError) as info:
        SamMaskSource.create("vit_b")
    message = str(info.value)
    assert SAM_B in message and SAM_B_URL in message and "SOCO_WEIGHTS_DIR" in message
    assert info.value.exit_code == 2
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        SamMaskSource.create("vit_b", weights="/nonexistent/sam.pth")
    with pytest.raises(ConfigError, match="vit_x"):
        SamMaskSource.create("vit_x")


def test_sam_checkpoint_that_does_not_fit_is_corrupt(source_sam, tmp_path, tiny_registry):
    state = source_sam.state_dict()
    state.pop("mask_decoder.iou_token.weight")
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(CorruptCheckpointError, match="does not fit SAM vit_b"):
        SamMaskSource.create("vit_b", weights=path)


def test_auto_rule_rejects_background_and_prefers_central_masks():
    h, w = 40, 60
    background = np.ones((h, w), bool)
    corner = np.zeros((h, w), bool)
    corner[:10, :10] = True
    central = np.zeros((h, w), bool)
    central[15:25, 25:35] = True
    empty = np.zeros((h, w), bool)
    masks = np.stack([np.stack([background, corner, empty]), np.stack([central, empty, empty])])
    ious = np.array([[0.99, 0.9, 0.9], [0.6, 0.0, 0.0]])
    mask, score, details = choose_auto_mask(masks, ious, np.array([[30.0, 20.0], [25.0, 20.0]]))
    assert np.array_equal(mask, central) and score == pytest.approx(0.6)
    assert details["rejected_background"] == 1 and details["rejected_empty"] == 3
    assert details["auto_point"] == [25.0, 20.0] and details["centrality"] == pytest.approx(1.0)
    with pytest.raises(NoMaskError, match="background"):
        choose_auto_mask(masks[:1, :1], ious[:1, :1], np.array([[30.0, 20.0]]))


# -- depth -------------------------------------------------------------------------------------------------------

def depth_scene():
    depth = np.full((60, 80), 1.5, np.float32)  # background plane at 1.5 m
    depth[:, :] += np.linspace(0, 0.05, 80, dtype=np.float32)[None, :]  # gently tilted
    box = np.zeros((60, 80), bool)
    box[20:40, 30:55] = True
    depth[box] = 0.6
    depth[0:3, 0:3] = 0.0  # holes
    depth[5, 70] = np.nan
    return depth, box


def test_depth_foreground_returns_exactly_the_near_box():
    depth, box = depth_scene()
    result = DepthForeground(depth_range=(0.1, 2.0)).segment(image(0, (60, 80, 3)), Prompt.auto(), depth)
    assert result.source == "depth" and np.array_equal(result.mask, box)
    assert result.details["median_depth"] == pytest.approx(0.6) and result.details["components"] == 2
    # A point on the box gives the box too.
    assert np.array_equal(DepthForeground().segment(np.zeros((60, 80, 3)), Prompt(point=(40.5, 30.2)), depth).mask, box)


def test_depth_prompt_on_background_returns_background_component():
    depth, box = depth_scene()
    result = DepthForeground().segment(np.zeros((60, 80)), Prompt(point=(5.5, 50.0)), depth)
    expected = ~box & np.isfinite(depth) & (depth > 0)
    assert np.array_equal(result.mask, expected)
    assert result.details["rule"] == "component containing the prompt point"


def test_depth_box_prompt_and_range():
    depth, box = depth_scene()
    # A box around the background only: the nearest surface inside it is the plane.
    result = DepthForeground().segment(np.zeros((60, 80)), Prompt(box=(60, 10, 80, 50)), depth)
    assert result.mask[10:50, 60:80].all() and result.mask.sum() == 40 * 20
    # A range that excludes the box leaves the plane.
    far_only = DepthForeground(depth_range=(1.0, 2.0)).segment(np.zeros((60, 80)), Prompt.auto(), depth)
    assert not (far_only.mask & box).any() and far_only.mask.sum() > 3000


def test_depth_errors():
    source = DepthForeground(depth_range=(0.1, 2.0))
    with pytest.raises(InputError, match=r"no valid depth in range \[0.1, 2\] m"):
        source.segment(np.zeros((60, 80)), Prompt.auto(), np.zeros((60, 80)))
    with pytest.raises(InputError, match="needs a depth map"):
        source.segment(np.zeros((60, 80)), Prompt.auto(), None)
    with pytest.raises(InputError, match="does not match the image"):
        source.segment(np.zeros((60, 80)), Prompt.auto(), np.ones((30, 40)))
    depth, _ = depth_scene()
    with pytest.raises(NoMaskError, match="has no valid depth"):
        source.segment(np.zeros((60, 80)), Prompt(point=(1, 1)), depth)
    with pytest.raises(NoMaskError, match="at least 100000 px"):
        DepthForeground(min_area=100000).segment(np.zeros((60, 80)), Prompt.auto(), depth)
    with pytest.raises(ConfigError):
        DepthForeground(depth_range=(2.0, 1.0))


# -- GrabCut -----------------------------------------------------------------------------------------------------

def disk_scene():
    rng = np.random.default_rng(7)
    h, w = 120, 160
    yy, xx = np.mgrid[0:h, 0:w]
    background = np.stack([90 + 40 * ((xx // 8 + yy // 8) % 2), 110 + 30 * np.sin(xx / 5.0), 100 + 0 * xx], -1)
    background = background + rng.normal(0, 12, (h, w, 3))
    disk = (xx - 82) ** 2 + (yy - 58) ** 2 <= 30 ** 2
    img = background.copy()
    img[disk] = np.array([220, 40, 40]) + rng.normal(0, 8, (int(disk.sum()), 3))
    return np.clip(img, 0, 255).astype(np.uint8), disk


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_grabcut_box_finds_the_disk():
    img, disk = disk_scene()
    result = GrabCutBox(iterations=5).segment(img, Prompt(box=(40, 18, 124, 100)))
    assert result.source == "grabcut" and result.mask.shape == disk.shape
    assert iou(result.mask, disk) > 0.8
    assert result.details["box"] == [40, 18, 124, 100] and result.details["box_source"] == "prompt"


def test_grabcut_default_box_and_errors():
    img, disk = disk_scene()
    result = GrabCutBox().segment(img)  # centred 60 % box contains the disk
    assert result.details["box_source"] == "centred 60% default" and iou(result.mask, disk) > 0.7
    with pytest.raises(InputError, match="too small for GrabCut"):
        GrabCutBox().segment(np.zeros((5, 5, 3), np.uint8))
    with pytest.raises(InputError, match="whole image"):
        GrabCutBox().segment(img, Prompt(box=(0, 0, 160, 120)))


# -- given mask, prompts, factory, fallback ---------------------------------------------------------------------

def test_given_mask():
    mask = np.zeros((48, 64), np.uint8)
    mask[10:20, 10:30] = 255
    result = GivenMask(mask).segment(image(0)[..., :1])  # HxWx1 grayscale goes through to_rgb_array
    assert result.source == "given" and result.mask.dtype == bool and result.area == 200
    with pytest.raises(InputError, match=r"given mask is 48x64 \(HxW\) but the image is 40x64"):
        GivenMask(mask).segment(image(0, (40, 64, 3)))
    with pytest.raises(InputError, match="no foreground"):
        GivenMask(np.zeros((4, 4)))


def test_bad_inputs_raise_specific_errors():
    source = GivenMask(np.ones((48, 64), bool))
    with pytest.raises(InputError, match="empty"):
        source.segment(np.zeros((0, 64, 3), np.uint8))
    with pytest.raises(InputError, match=r"prompt point \(64, 10\) is outside the image \(64x48 px"):
        source.segment(image(0), Prompt(point=(64, 10)))
    with pytest.raises(InputError, match="prompt box .* is outside the image"):
        source.segment(image(0), Prompt(box=(-1, 0, 10, 10)))
    with pytest.raises(InputError, match="x0 < x1"):
        Prompt(box=(10, 0, 5, 10))
    with pytest.raises(InputError, match="2 numbers"):
        Prompt(point=(1, 2, 3))
    with pytest.raises(InputError, match="finite"):
        Prompt(point=(float("nan"), 2))
    with pytest.raises(InputError, match="image array must be"):
        source.segment(np.zeros((48, 64, 2), np.uint8))
    assert Prompt.auto().is_auto and Prompt(point=(1, 2)).point == (1.0, 2.0)


def test_mask_source_from_name():
    assert isinstance(mask_source_from_name("depth", depth_range=(0.2, 1.0)), DepthForeground)
    assert isinstance(mask_source_from_name(" GrabCut ", iterations=2), GrabCutBox)
    assert isinstance(mask_source_from_name("given", mask=np.ones((2, 2))), GivenMask)
    with pytest.raises(ConfigError, match="unknown mask source 'mask_rcnn'"):
        mask_source_from_name("mask_rcnn")
    with pytest.raises(ConfigError, match="bad options"):
        mask_source_from_name("grabcut", colour="red")
    with pytest.raises(WeightsNotFoundError):
        mask_source_from_name("sam", model_type="vit_h")


def test_auto_mask_source_falls_back_offline():
    depth, _ = depth_scene()
    source, reason = auto_mask_source(depth)
    assert isinstance(source, DepthForeground)
    assert reason.startswith("depth:") and SAM_B in reason and "depth map was given" in reason
    source, reason = auto_mask_source(None)
    assert isinstance(source, GrabCutBox)
    assert reason.startswith("grabcut:") and "SAM unavailable" in reason and "no depth map" in reason
