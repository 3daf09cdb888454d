"""The runtime contract: torch and ONNX Runtime give the same features and the same matches through the
pipeline; exported models are checked against the request; providers never fall back silently; TensorRT
runs where a GPU and tensorrt exist and is skipped with the reason elsewhere."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from correspondence.api import Matcher  # noqa: E402
from correspondence.backbones import create_backbone  # noqa: E402
from correspondence.cli import main  # noqa: E402
from correspondence.demo_spec import DemoSpec  # noqa: E402
from correspondence.errors import ConfigError, InputError, MissingDependencyError  # noqa: E402
from correspondence.features import ExtractionSettings, FeatureExtractor  # noqa: E402
from correspondence.io import KeypointSet, NamedPoint  # noqa: E402
from correspondence.pipeline import TransferPipeline  # noqa: E402
from correspondence.preprocessing import PreprocessSettings  # noqa: E402
from correspondence.runtimes import RuntimeSpec, TorchRuntime, create_runtime  # noqa: E402
from correspondence.runtimes.deps import tensorrt_missing  # noqa: E402
from export.inputs import image_pair  # noqa: E402
from export.onnx_export import export_backbone  # noqa: E402

SIZE = 112
TRT_MISSING = tensorrt_missing()
needs_tensorrt = pytest.mark.skipif(bool(TRT_MISSING), reason="TensorRT unavailable: " + "; ".join(TRT_MISSING))


@pytest.fixture(scope="module")
def tiny():
    return create_backbone("test_vit_tiny")


@pytest.fixture(scope="module")
def onnx_model(tiny, tmp_path_factory):
    result = export_backbone(tiny, SIZE, tmp_path_factory.mktemp("model") / "tiny.onnx", log=lambda m: None)
    assert result.report.passed
    return result.path


@pytest.fixture(scope="module")
def scene():
    demo, live = image_pair(seed=3, side=320)
    rng = np.random.default_rng(1)
    keypoints = KeypointSet(tuple(NamedPoint(f"k{i}", tuple(xy)) for i, xy in enumerate(rng.uniform(10, 300, (24, 2)))))
    return DemoSpec(None, demo, None, None, None, keypoints, None, None), live


def test_onnx_runtime_and_torch_give_the_same_matches_through_the_pipeline(tiny, onnx_model, scene):
    demo, live = scene
    results = {}
    for name, runtime in (("torch", None), ("onnxruntime", {"name": "onnxruntime", "model": str(onnx_model)})):
        matcher = Matcher.create(tiny if name == "torch" else "auto", size=SIZE if name == "torch" else None,
                                 runtime=runtime)
        results[name] = TransferPipeline(demo, matcher).process(live)
        assert matcher.extractor.describe()["runtime"]["name"] == name
    torch_result, onnx_result = results["torch"], results["onnxruntime"]
    assert len(torch_result.matches) == 24
    assert [m.live_xy for m in torch_result.matches] == [m.live_xy for m in onnx_result.matches]
    assert np.array_equal(torch_result.accepted, onnx_result.accepted)
    np.testing.assert_allclose([m.score for m in torch_result.matches], [m.score for m in onnx_result.matches],
                               atol=1e-5)
    # and the matches are not trivial: they spread over the live image
    assert len({m.live_xy for m in torch_result.matches}) > 5


def test_feature_maps_agree_and_onnx_describes_the_provider_in_use(tiny, onnx_model):
    settings = ExtractionSettings(PreprocessSettings(size=SIZE))
    reference = FeatureExtractor(tiny, settings)
    runtime = create_runtime(RuntimeSpec("onnxruntime", str(onnx_model)), tiny)
    exported = FeatureExtractor(tiny, settings, runtime=runtime)
    images = list(image_pair(seed=5, side=200))
    for a, b in zip(reference.extract_batch(images), exported.extract_batch(images)):
        cos = torch.nn.functional.cosine_similarity(a.flat(), b.flat(), dim=1)
        assert cos.min() >= 0.9999
    record = exported.describe()["runtime"]
    assert record["providers_in_use"][0] == record["provider_requested"] == "CPUExecutionProvider"
    assert exported._settings_key != reference._settings_key  # runtimes never share cache entries


def test_torch_runtime_is_the_default_and_compile_is_wired(tiny):
    settings = ExtractionSettings(PreprocessSettings(size=56))
    default = FeatureExtractor(tiny, settings)
    assert isinstance(default.runtime, TorchRuntime) and default.runtime.describe()["compile"] is False
    compiled = FeatureExtractor(tiny, settings, runtime=TorchRuntime(tiny.module, compile=True,
                                                                     compile_backend="eager"))
    image = image_pair(seed=2, side=120)[0]
    assert compiled.runtime.describe()["compile"] == "eager"
    torch.testing.assert_close(default(image).features, compiled(image).features)


def test_exported_model_must_match_the_request(tiny, onnx_model):
    spec = {"name": "onnxruntime", "model": str(onnx_model)}
    with pytest.raises(ConfigError, match=r"input size 112 px \(requested 224 px\)"):
        Matcher.create("auto", size=224, runtime=spec)
    with pytest.raises(ConfigError, match="backbone 'test_vit_tiny' \\(requested 'dinov2_vits14'\\)"):
        Matcher.create("dinov2_vits14", runtime=spec)
    with pytest.raises(ConfigError, match="output kind 'last_raw' \\(requested 'last_norm'\\)"):
        FeatureExtractor(tiny, ExtractionSettings(PreprocessSettings(size=SIZE), kind="last_norm"),
                         runtime=create_runtime(RuntimeSpec("onnxruntime", str(onnx_model)), tiny))
    matcher = Matcher.create("auto", runtime=spec)  # backbone and size come from the model's metadata
    assert matcher.extractor.describe()["effective_image_size"] == SIZE
    assert matcher.extractor.backbone.weights.kind == "exported-random"
    with pytest.raises(ConfigError, match="torch weights were never loaded"):
        matcher.extractor.backbone.module.forward_dense(torch.zeros(1, 3, SIZE, SIZE))


def test_runtime_spec_errors_are_specific(tmp_path):
    with pytest.raises(ConfigError, match="unknown runtime 'openvino'"):
        RuntimeSpec("openvino")
    with pytest.raises(ConfigError, match="needs model=PATH"):
        RuntimeSpec.coerce("onnxruntime")
    with pytest.raises(ConfigError, match="unknown runtime option"):
        RuntimeSpec.coerce({"name": "torch", "modle": "x"})
    with pytest.raises(ConfigError, match="unknown onnxruntime provider 'gpu'"):
        RuntimeSpec("onnxruntime", "m.onnx", provider="gpu")
    with pytest.raises(InputError, match="does not exist"):
        Matcher.create("auto", runtime={"name": "onnxruntime", "model": str(tmp_path / "missing.onnx")})


def test_unavailable_provider_is_an_error_not_a_cpu_fallback(tiny, onnx_model):
    import onnxruntime
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with pytest.raises(MissingDependencyError, match="refusing to fall back to the CPU silently"):
        create_runtime(RuntimeSpec("onnxruntime", str(onnx_model), provider="cuda"), tiny)


@pytest.mark.skipif(not TRT_MISSING, reason="TensorRT is available here; the refusal path does not apply")
def test_tensorrt_export_exits_2_with_a_clear_message(onnx_model, tmp_path, capsys):
    code = main(["export", "tensorrt", "--onnx", str(onnx_model), "--out", str(tmp_path / "m.engine")])
    assert code == 2
    err = capsys.readouterr().err
    assert "TensorRT is not usable on this machine" in err and ("tensorrt" in err and "GPU" in err)
    assert not (tmp_path / "m.engine").exists()


@needs_tensorrt
def test_tensorrt_engine_builds_verifies_and_matches_torch(tiny, onnx_model, scene, tmp_path):
    from export.tensorrt_build import build_and_verify
    engine = tmp_path / "tiny.engine"
    result = build_and_verify(onnx_model, engine, fp16=False, max_batch=2, log=lambda m: None)
    assert result.report.passed, result.report.text()
    sidecar = json.loads((tmp_path / "tiny.engine.json").read_text())
    assert sidecar["environment"]["tensorrt_version"] and sidecar["environment"]["gpu_name"]
    demo, live = scene
    torch_matches = TransferPipeline(demo, Matcher.create(tiny, size=SIZE)).process(live).matches
    trt = Matcher.create("auto", device="cuda", runtime={"name": "tensorrt", "model": str(engine)})
    trt_matches = TransferPipeline(demo, trt).process(live).matches
    same = np.mean([a.live_xy == b.live_xy for a, b in zip(torch_matches, trt_matches)])
    assert same >= 0.95


@needs_tensorrt
def test_tensorrt_engine_is_rebuilt_when_versions_differ(onnx_model, tmp_path):
    from correspondence.runtimes.tensorrt_engine import EngineRecord, ensure_engine, sidecar_path
    engine = tmp_path / "tiny.engine"
    first = ensure_engine(onnx_model, engine, fp16=True, max_batch=2, log=lambda m: None)
    assert first.fp16 and first.layers_forced_fp32 > 0  # LayerNorm held in fp32 under fp16
    data = json.loads(sidecar_path(engine).read_text())
    data["environment"]["tensorrt_version"] = "0.0.0"
    sidecar_path(engine).write_text(json.dumps(data))
    messages = []
    rebuilt = ensure_engine(onnx_model, engine, fp16=True, max_batch=2, log=messages.append)
    assert any("(re)building" in m for m in messages)
    assert EngineRecord.load(engine).environment == rebuilt.environment != data["environment"]
