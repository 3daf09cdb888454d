"""Precision ``auto``: native-bf16 detection, the first-use bf16 check on the user's weights (accept, refuse with a
logged reason, cache hit), explicit choices winning, and the library / CLI / node defaults."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from correspondence.api import Matcher
from correspondence.backbones import create_backbone
from correspondence.backbones.contract import OutputKind
from correspondence.features import ExtractionSettings, FeatureExtractor
from correspondence.preprocessing import PreprocessSettings
from correspondence.runtimes import precision
from correspondence.runtimes.precision import CpuBf16, resolve_precision

NATIVE = CpuBf16(True, "AVX512", ("avx512_bf16",))
EMULATED = CpuBf16(False, "AVX2", ())


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(precision.ENV_CACHE, str(tmp_path / "precision"))
    return tmp_path / "precision"


@pytest.fixture
def tiny():
    """The tiny ViT with its layer scales at 1, as in trained weights (at DINOv2's init, 1e-5, the blocks add
    nothing to the output and bf16 could not make a difference there)."""
    loaded = create_backbone("test_vit_tiny", random_init=True)
    with torch.no_grad():
        for name, param in loaded.module.named_parameters():
            if name.endswith(".gamma"):
                param.fill_(1.0)
    return loaded


def settings(dtype="auto", size=112, kind=OutputKind.LAST_RAW, layers=(-1,)):
    return ExtractionSettings(PreprocessSettings(size=size), kind=kind, layers=layers, dtype=dtype)


def with_cpu(monkeypatch, cpu: CpuBf16) -> None:
    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: cpu)


def break_bf16(loaded):
    """The network's output is scrambled whenever bf16 autocast is on (a model whose bf16 path is wrong)."""
    original = loaded.module.forward_dense

    def forward_dense(images, kind=OutputKind.LAST_RAW, layers=(-1,)):
        out = original(images, kind, layers)
        if torch.is_autocast_enabled("cpu"):
            out = [o.flip(-1).flip(-2) for o in out]
        return out

    loaded.module.forward_dense = forward_dense
    return loaded


def test_cpu_detection_agrees_with_the_cpu_flags():
    flags = precision.cpu_flags()
    found = precision.cpu_bf16_support()
    assert found.capability == torch.backends.cpu.get_cpu_capability()
    if {"avx512_bf16", "amx_bf16"} & flags:
        assert found.native
    assert found.native == bool(found.evidence)
    assert ("no native" in found.describe()) == (not found.native)


def test_a_cpu_without_native_bf16_runs_float32_and_says_why(cache, tiny, monkeypatch):
    with_cpu(monkeypatch, EMULATED)
    resolved, choice = resolve_precision(settings(), tiny, torch.device("cpu"))
    assert resolved.dtype == choice.dtype == "float32" and choice.requested == "auto"
    assert "no native bf16" in choice.reason and "AVX2" in choice.reason and choice.verification is None
    assert not cache.exists()  # nothing to verify, nothing recorded


def test_native_bf16_is_verified_on_the_weights_recorded_and_then_read_from_the_cache(cache, tiny, monkeypatch):
    with_cpu(monkeypatch, NATIVE)
    resolved, choice = resolve_precision(settings(), tiny, torch.device("cpu"))
    assert resolved.dtype == choice.dtype == "bfloat16", choice.reason
    record = choice.verification
    assert record["passed"] and not record["cached"]
    names = {c["name"].split(":")[0] for c in record["checks"]}
    assert any("argmax" in n for n in names) and {"features"} <= names
    # the record sits next to the weights' hash
    files = list(cache.glob("*.json"))
    assert [f.stem for f in files] == [precision.weights_key(tiny)]
    stored = json.loads(files[0].read_text())
    assert stored["format"] == precision.CHECK_FORMAT and len(stored["entries"]) == 1

    def must_not_run(*args, **kwargs):
        raise AssertionError("the cached check ran again")

    monkeypatch.setattr(precision, "check_precision", must_not_run)
    _, again = resolve_precision(settings(), tiny, torch.device("cpu"))
    assert again.dtype == "bfloat16" and again.verification["cached"]
    # another size is another check
    monkeypatch.undo()
    with_cpu(monkeypatch, NATIVE)
    monkeypatch.setenv(precision.ENV_CACHE, str(cache))
    _, other = resolve_precision(settings(size=84), tiny, torch.device("cpu"))
    assert not other.verification["cached"]
    assert len(json.loads(files[0].read_text())["entries"]) == 2


def test_a_model_whose_bf16_is_broken_falls_back_to_float32_with_a_logged_reason(cache, tiny, monkeypatch, caplog):
    with_cpu(monkeypatch, NATIVE)
    broken = break_bf16(tiny)
    with caplog.at_level(logging.WARNING, logger="soco.precision"):
        resolved, choice = resolve_precision(settings(), broken, torch.device("cpu"))
    assert resolved.dtype == choice.dtype == "float32"
    assert not choice.verification["passed"]
    assert "bf16 failed verification" in choice.reason and "argmax" in choice.reason
    assert any("falling back to float32" in r.getMessage() for r in caplog.records)
    # the refusal is cached too, and an extractor built from it runs float32
    extractor = FeatureExtractor(broken, settings())
    assert extractor.settings.dtype == "float32" and extractor.precision.verification["cached"]
    assert extractor.runtime.describe()["dtype"] == "float32"


def test_the_check_measures_the_real_bf16_error(cache, tiny):
    record = precision.check_precision(tiny, settings(kind=OutputKind.BLOCKS, layers=(-2, -1)), torch.device("cpu"),
                                       "bfloat16")
    details = record["details"]
    assert set(details) >= {"block_2", "block_3", "argmax"}
    for block in ("block_2", "block_3"):  # bf16 is not fp32: the figures are real measurements, not 1.0
        assert 0.95 < details[block]["min_cosine"] < 1.0
        assert 0 < details[block]["relative_error"] < 0.2


def test_an_explicit_choice_always_wins(cache, tiny, monkeypatch):
    with_cpu(monkeypatch, NATIVE)
    _, fp32 = resolve_precision(settings("float32"), tiny, torch.device("cpu"))
    assert fp32.dtype == "float32" and fp32.reason == "explicit"
    with_cpu(monkeypatch, EMULATED)
    _, bf16 = resolve_precision(settings("bfloat16"), tiny, torch.device("cpu"))
    assert bf16.dtype == "bfloat16" and bf16.reason == "explicit"
    assert not cache.exists()


def test_auto_keeps_float32_on_cuda_for_exported_models_and_without_weights(cache, tiny, monkeypatch):
    with_cpu(monkeypatch, NATIVE)
    _, cuda = resolve_precision(settings(), tiny, torch.device("cuda"))  # decided before anything runs there
    assert cuda.dtype == "float32" and cuda.reason.startswith("cuda")
    _, onnx = resolve_precision(settings(), tiny, torch.device("cpu"), runtime="onnxruntime")
    assert onnx.dtype == "float32" and "exported" in onnx.reason
    daisy = create_backbone("daisy")
    _, free = resolve_precision(settings(), daisy, torch.device("cpu"))
    assert free.dtype == "float32" and "no learned weights" in free.reason


def test_matcher_defaults_to_auto_and_reports_the_choice(cache, monkeypatch):
    with_cpu(monkeypatch, EMULATED)
    matcher = Matcher.create("test_vit_tiny", random_weights=True, size=112)
    record = matcher.extractor.describe()
    assert record["precision"]["requested"] == "auto" and record["extraction"]["dtype"] == "float32"
    explicit = Matcher.create("test_vit_tiny", random_weights=True, size=112, dtype="float32")
    image = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    assert torch.equal(matcher.extractor(image).features, explicit.extractor(image).features)
    with_cpu(monkeypatch, NATIVE)
    fast = Matcher.create("test_vit_tiny", random_weights=True, size=112)
    assert fast.extractor.describe()["runtime"]["dtype"] == "bfloat16"


def test_cli_and_node_default_to_auto():
    from correspondence.cli import build_parser
    from soco_ros.parameters import BY_NAME

    args = build_parser().parse_args(["match", "--demo", "a.png", "--demo-keypoints", "k.json", "--live", "b.png"])
    assert args.dtype == "auto"
    node = BY_NAME["dtype"]
    assert node.default == "auto" and "auto" in node.choices


def test_torch_runtime_refuses_an_unresolved_auto(tiny):
    from correspondence.errors import ConfigError
    from correspondence.runtimes import TorchRuntime
    with pytest.raises(ConfigError, match="resolve 'auto'"):
        TorchRuntime(tiny.module, "cpu", "auto")
