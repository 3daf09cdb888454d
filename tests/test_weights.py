"""Weight resolution and official-checkpoint loading, on checkpoints written here in the official key layout."""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from correspondence.backbones import OutputKind, create_backbone, get_spec
from correspondence.backbones.vit import resize_patch_pos_embed
from correspondence.backbones.weights import load_state_dict, resolve_weights
from correspondence.cli import main
from correspondence.errors import CorruptCheckpointError, WeightsNotFoundError


def official_dinov2_state(timm_state: dict[str, torch.Tensor], registers: bool,
                          cls_position: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Write a timm DINOv2 model's weights in the layout of ``dinov2_vits14[_reg4]_pretrain.pth``.

    Official checkpoints carry ``mask_token``; register models call their tokens ``register_tokens`` and keep
    the CLS position inside ``pos_embed`` (timm folds it into ``cls_token``).
    """
    state = {k: v.clone() for k, v in timm_state.items()}
    dim = state["cls_token"].shape[-1]
    state["mask_token"] = torch.randn(1, dim)
    if registers:
        state["register_tokens"] = state.pop("reg_token")
        position = torch.zeros(1, 1, dim) if cls_position is None else cls_position
        state["cls_token"] = state["cls_token"] - position
        state["pos_embed"] = torch.cat([position, state["pos_embed"]], dim=1)
    return state


def perturbed(name: str, seed: int):
    """A random-init backbone moved away from the registry's seeded init, so a load that silently kept the
    fresh init could not pass for a successful one."""
    loaded = create_backbone(name, random_init=True)
    generator = torch.Generator().manual_seed(seed)
    for p in loaded.module.parameters():
        p.add_(torch.randn(p.shape, generator=generator) * 0.02)
    fresh = create_backbone(name, random_init=True)
    x = torch.randn(1, 3, 4 * fresh.spec.contract.patch_size, 4 * fresh.spec.contract.patch_size)
    assert not torch.allclose(fresh.module.forward_dense(x)[0], loaded.module.forward_dense(x)[0])
    return loaded


@pytest.fixture(scope="module")
def source_vits14():
    return perturbed("dinov2_vits14", 123)


def test_official_layout_has_the_official_keys(source_vits14):
    state = official_dinov2_state(source_vits14.module.model.state_dict(), registers=False)
    assert state["pos_embed"].shape == (1, 1 + 37 * 37, 384)  # 518 px / 14 = 37, plus the CLS position
    assert {"mask_token", "cls_token", "patch_embed.proj.weight", "blocks.0.ls1.gamma", "blocks.11.mlp.fc2.weight",
            "norm.weight"} <= set(state)


def test_official_dinov2_checkpoint_reproduces_source_features(source_vits14, tmp_path):
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(official_dinov2_state(source_vits14.module.model.state_dict(), registers=False), path)
    loaded = create_backbone("dinov2_vits14", weights=path)
    assert loaded.weights.kind == "pretrained" and loaded.weights.sha256
    x = torch.randn(2, 3, 224, 224)
    for kind in (OutputKind.LAST_RAW, OutputKind.LAST_NORM, OutputKind.DENSE_CLS):
        assert torch.equal(loaded.module.forward_dense(x, kind)[0], source_vits14.module.forward_dense(x, kind)[0])
    blocks = loaded.module.forward_dense(x, OutputKind.BLOCKS, (-3, -2, -1))
    assert len(blocks) == 3 and all(torch.equal(a, b) for a, b in
                                    zip(blocks, source_vits14.module.forward_dense(x, OutputKind.BLOCKS, (9, 10, 11))))


def test_register_checkpoint_folds_the_cls_position(tmp_path):
    source = perturbed("dinov2_vits14_reg", 5)
    timm_state = source.module.model.state_dict()
    path = tmp_path / "reg_zero.pth"
    torch.save(official_dinov2_state(timm_state, registers=True), path)
    loaded = create_backbone("dinov2_vits14_reg", weights=path)
    x = torch.randn(1, 3, 112, 112)
    assert torch.equal(loaded.module.forward_dense(x)[0], source.module.forward_dense(x)[0])
    position = torch.randn(1, 1, 384)
    official = official_dinov2_state(timm_state, registers=True, cls_position=position)
    torch.save(official, tmp_path / "reg.pth")
    loaded = create_backbone("dinov2_vits14_reg", weights=tmp_path / "reg.pth")
    expected_cls = official["cls_token"] + official["pos_embed"][:, :1]
    assert torch.equal(loaded.module.model.cls_token, expected_cls)
    assert torch.allclose(loaded.module.forward_dense(x)[0], source.module.forward_dense(x)[0], atol=1e-5)


def test_block_by_block_forward_matches_timm_at_native_size(source_vits14):
    x = torch.randn(1, 3, 518, 518)
    ours = source_vits14.module.forward_dense(x, OutputKind.LAST_NORM)[0]
    timm_tokens = source_vits14.module.model.forward_features(x)[:, 1:]
    assert torch.allclose(ours.flatten(2).transpose(1, 2), timm_tokens, atol=1e-5)


def test_pos_embed_resize_follows_the_official_rule():
    torch.manual_seed(0)
    pos = torch.randn(1, 37 * 37, 8)
    assert resize_patch_pos_embed(pos, 37, 37) is pos
    grid = pos.reshape(1, 37, 37, 8).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, scale_factor=(16.1 / 37, 16.1 / 37), mode="bicubic", antialias=False)
    out = resize_patch_pos_embed(pos, 16, 16)
    assert out.shape == (1, 256, 8)
    assert torch.equal(out, expected.permute(0, 2, 3, 1).reshape(1, 256, 8))


def test_resolution_order_explicit_env_cache(source_vits14, tmp_path, monkeypatch):
    spec = get_spec("dinov2_vits14")
    state = official_dinov2_state(source_vits14.module.model.state_dict(), registers=False)
    env_dir, hub = tmp_path / "env", tmp_path / "torch_home" / "hub" / "checkpoints"
    env_dir.mkdir()
    hub.mkdir(parents=True)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    torch.save(state, hub / spec.source.filename)
    assert resolve_weights(spec.source) == hub / spec.source.filename
    monkeypatch.setenv("SOCO_WEIGHTS_DIR", str(env_dir))
    torch.save(state, env_dir / spec.source.filename)
    assert resolve_weights(spec.source) == env_dir / spec.source.filename
    explicit = tmp_path / "mine.pth"
    torch.save(state, explicit)
    assert resolve_weights(spec.source, explicit) == explicit
    assert create_backbone("dinov2_vits14").weights.path == str(env_dir / spec.source.filename)


def test_missing_weights_name_file_url_and_variable():
    spec = get_spec("dinov2_vits14")
    with pytest.raises(WeightsNotFoundError) as info:
        create_backbone("dinov2_vits14")
    message = str(info.value)
    assert spec.source.filename in message and spec.source.url in message and "SOCO_WEIGHTS_DIR" in message
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        create_backbone("dinov2_vits14", weights="/nonexistent/dinov2.pth")
    with pytest.raises(WeightsNotFoundError, match="licence-gated"):
        create_backbone("dinov3_vits16")


def test_cli_exit_code_2_when_weights_missing(tmp_path, capsys):
    image = tmp_path / "img.png"
    from PIL import Image
    Image.new("RGB", (64, 64), (10, 200, 30)).save(image)
    kps = tmp_path / "kp.json"
    kps.write_text('{"keypoints": [{"name": "a", "xy": [10, 10]}]}')
    code = main(["match", "--demo", str(image), "--demo-keypoints", str(kps), "--live", str(image),
                 "--backbone", "dinov2_vits14", "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "dinov2_vits14_pretrain.pth" in err and "https://dl.fbaipublicfiles.com" in err and "SOCO_WEIGHTS_DIR" in err


def test_corrupt_and_mismatched_checkpoints_give_clear_errors(source_vits14, tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(CorruptCheckpointError, match="cannot read checkpoint"):
        create_backbone("dinov2_vits14", weights=corrupt)
    truncated = tmp_path / "truncated.pth"
    torch.save(official_dinov2_state(source_vits14.module.model.state_dict(), registers=False), truncated)
    truncated.write_bytes(truncated.read_bytes()[: os.path.getsize(truncated) // 2])
    with pytest.raises(CorruptCheckpointError):
        create_backbone("dinov2_vits14", weights=truncated)
    wrong = tmp_path / "vitb_for_vits.pth"
    torch.save({"cls_token": torch.zeros(1, 1, 768)}, wrong)
    with pytest.raises(CorruptCheckpointError, match="does not fit"):
        create_backbone("dinov2_vits14", weights=wrong)


def test_checkpoint_with_code_is_refused(tmp_path):
    """weights_only=True: a pickle that would run code is rejected, not executed."""
    evil = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "callback": os.getcwd}, evil)
    with pytest.raises(CorruptCheckpointError):
        load_state_dict(evil)


def test_remap_handles_chunked_blocks_and_swiglu():
    from correspondence.backbones.vit import remap_official_dinov2
    state = {"blocks.1.10.mlp.w12.weight": torch.zeros(1), "blocks.1.10.mlp.w3.bias": torch.zeros(1),
             "blocks.0.3.attn.qkv.weight": torch.zeros(1), "mask_token": torch.zeros(1)}
    out = remap_official_dinov2(state, torch.nn.Module())
    assert set(out) == {"blocks.10.mlp.fc1.weight", "blocks.10.mlp.fc2.bias", "blocks.3.attn.qkv.weight"}


def test_official_dinov3_layout_loads_through_timm_conversion(tmp_path):
    """DINOv3 checkpoints name registers ``storage_tokens`` and layer scales ``ls1.gamma``; they carry a
    ``mask_token``, RoPE ``periods`` and (all-zero for the distilled models) ``qkv.bias`` + ``bias_mask``."""
    source = perturbed("dinov3_vits16", 11)
    official = {}
    for key, value in source.module.model.state_dict().items():
        if "rope" in key:
            continue
        key = key.replace("reg_token", "storage_tokens").replace("gamma_1", "ls1.gamma").replace("gamma_2", "ls2.gamma")
        official[key] = value.clone()
        if key.endswith("attn.qkv.weight"):
            official[key.replace("weight", "bias")] = torch.zeros(value.shape[0])
            official[key.replace("weight", "bias_mask")] = torch.ones(value.shape[0])
    official["mask_token"] = torch.zeros(1, 384)
    official["rope_embed.periods"] = torch.ones(16)
    assert "storage_tokens" in official and "blocks.0.ls1.gamma" in official
    path = tmp_path / "dinov3_vits16_pretrain_lvd1689m-08c60483.pth"
    torch.save(official, path)
    loaded = create_backbone("dinov3_vits16", weights=path)
    x = torch.randn(1, 3, 64, 64)
    for kind in (OutputKind.LAST_RAW, OutputKind.DENSE_CLS):
        assert torch.equal(loaded.module.forward_dense(x, kind)[0], source.module.forward_dense(x, kind)[0])


def official_interpolate_pos_encoding(pos_embed: torch.Tensor, height: int, width: int, patch: int,
                                      interpolate_offset: float, interpolate_antialias: bool) -> torch.Tensor:
    """facebookresearch/dinov2 ``DinoVisionTransformer.interpolate_pos_encoding`` written out from the released
    source (models/vision_transformer.py): note it names the image height ``w`` (``B, nc, w, h = x.shape``), so
    ``sx`` scales the rows. Returns the patch part ``(1, h0 * w0, C)``."""
    import math
    N = pos_embed.shape[1] - 1
    patch_pos_embed = pos_embed.float()[:, 1:]
    dim = pos_embed.shape[-1]
    w, h = height, width
    w0, h0 = w // patch, h // patch
    M = int(math.sqrt(N))
    kwargs = {}
    if interpolate_offset:
        sx = float(w0 + interpolate_offset) / M
        sy = float(h0 + interpolate_offset) / M
        kwargs["scale_factor"] = (sx, sy)
    else:
        kwargs["size"] = (w0, h0)
    patch_pos_embed = F.interpolate(patch_pos_embed.reshape(1, M, M, dim).permute(0, 3, 1, 2), mode="bicubic",
                                    antialias=interpolate_antialias, **kwargs)
    assert (w0, h0) == patch_pos_embed.shape[-2:]
    return patch_pos_embed.permute(0, 2, 3, 1).reshape(1, -1, dim)


@pytest.mark.parametrize("name, offset, antialias", [("dinov2_vits14", 0.1, False), ("dinov2_vits14_reg", 0.0, True)])
@pytest.mark.parametrize("hw", [(448, 448), (224, 336), (630, 182)])
def test_pos_embed_interpolation_equals_the_official_hub_model(name, offset, antialias, hw):
    """Plain models: the hub default (offset 0.1, no antialias); register models: the hub builders'
    ``interpolate_antialias=True, interpolate_offset=0.0``."""
    module = create_backbone(name, random_init=True).module
    pos = module.model.pos_embed
    official_pos = pos if name.endswith("14") else torch.cat([torch.zeros_like(pos[:, :1]), pos], 1)
    expected = official_interpolate_pos_encoding(official_pos, hw[0], hw[1], 14, offset, antialias)
    ours = module.patch_pos_embed(hw[0] // 14, hw[1] // 14)
    assert torch.allclose(ours, expected, atol=1e-6)
    other = official_interpolate_pos_encoding(official_pos, hw[0], hw[1], 14, 0.1 - offset, not antialias)
    assert not torch.allclose(ours, other, atol=1e-4)  # the two rules differ: the test can tell them apart


def test_create_backbone_leaves_the_global_rng_alone():
    torch.manual_seed(42)
    expected = torch.rand(3)
    torch.manual_seed(42)
    create_backbone("test_vit_tiny")
    assert torch.equal(torch.rand(3), expected)


def test_prepared_positional_embedding_is_updated_in_place():
    """A CUDA graph records the fixed embedding's address: a second ``prepare`` at the same size (another extractor
    on the same module) or new weights must update that tensor, never replace it, and forward must then give
    what a module built with those weights gives."""
    from correspondence.backbones.registry import create_backbone

    module = create_backbone("test_vit_tiny", random_init=True).module
    module.prepare((112, 112))
    held = module._pos_fixed[(8, 8)]
    address = held.data_ptr()
    module.prepare((112, 112))
    assert module._pos_fixed[(8, 8)] is held and held.data_ptr() == address
    other = create_backbone("test_vit_tiny", random_init=True).module
    state = {k: v + 0.1 * torch.randn_like(v) for k, v in other.model.state_dict().items()}
    other.model.load_state_dict(state)
    module.load_official(state, "timm")
    assert module._pos_fixed[(8, 8)] is held and held.data_ptr() == address
    images = torch.rand(1, 3, 112, 112)
    with torch.no_grad():
        assert torch.allclose(module.forward_dense(images)[0], other.forward_dense(images)[0], atol=1e-5)
