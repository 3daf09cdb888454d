"""The runtime contract: torch and ONNX Runtime give the same features and the same matches through the
pipeline; exported models are checked against the request; only verified exports load (unless allow_unverified);
providers never fall back silently; TensorRT runs where a GPU and tensorrt exist and is skipped with the reason
elsewhere, and its refusal names what this machine lacks."""
from __future__ import annotations

import json
import shutil
import sys
import types
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from correspondence.api import Matcher  # noqa: E402
from correspondence.hashing import file_sha256  # noqa: E402
from correspondence.backbones import create_backbone  # noqa: E402
from correspondence.cli import main  # noqa: E402
from correspondence.demo_spec import DemoSpec  # noqa: E402
from correspondence.errors import ConfigError, InputError, MissingDependencyError  # noqa: E402
from correspondence.features import ExtractionSettings, FeatureExtractor  # noqa: E402
from correspondence.io import KeypointSet, NamedPoint  # noqa: E402
from correspondence.pipeline import TransferPipeline  # noqa: E402
from correspondence.preprocessing import PreprocessSettings  # noqa: E402
from correspondence.runtimes import (RuntimeSpec, TorchRuntime, UnverifiedModelError,  # noqa: E402
                                     UnverifiedModelWarning, create_runtime)
from correspondence.runtimes import tensorrt_engine  # noqa: E402
from correspondence.runtimes.deps import tensorrt_missing  # noqa: E402
from correspondence.runtimes.metadata import VERIFICATION_KEY  # noqa: E402
from correspondence.runtimes.tensorrt_engine import (BuildEnvironment, EngineRecord, build_engine,  # noqa: E402
                                                     ensure_engine, has_fast_fp16)
from export.inputs import image_pair  # noqa: E402
from export.metadata import read_props, write_props  # noqa: E402
from export.onnx_export import export_backbone  # noqa: E402
from export.tensorrt_build import engine_io_check  # noqa: E402
from export.verify import THRESHOLDS  # noqa: E402

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
def rejected_model(tiny, tmp_path_factory):
    """An export that failed verification (a max-abs bound no export can meet), kept as tiny.rejected.onnx."""
    limits = THRESHOLDS["fp32"]
    saved = limits["max_relative_error"]
    limits["max_relative_error"] = 1e-12
    try:
        result = export_backbone(tiny, SIZE, tmp_path_factory.mktemp("rejected") / "tiny.onnx", log=lambda m: None)
    finally:
        limits["max_relative_error"] = saved
    assert not result.report.passed and result.path.name == "tiny.rejected.onnx"
    assert not result.requested.exists()
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


def test_a_failed_export_is_refused_by_the_runtime_with_the_report_named(tiny, rejected_model, tmp_path):
    spec = {"name": "onnxruntime", "model": str(rejected_model)}
    with pytest.raises(UnverifiedModelError) as refused:
        Matcher.create("auto", runtime=spec)
    message = str(refused.value)
    assert "FAILED verification" in message and "max abs error" in message
    assert str(rejected_model) + ".verify.json" in message  # the report, by path
    assert "allow_unverified=True" in message and "--allow-unverified" in message
    # the record travels inside the file: renaming the rejected model does not make it deployable
    renamed = tmp_path / "tiny.onnx"
    shutil.copy(rejected_model, renamed)
    with pytest.raises(UnverifiedModelError, match="FAILED verification"):
        create_runtime(RuntimeSpec("onnxruntime", str(renamed)), tiny)


def test_allow_unverified_loads_a_failed_export_with_a_warning(tiny, onnx_model, rejected_model):
    with pytest.warns(UnverifiedModelWarning, match="FAILED verification"):
        matcher = Matcher.create("auto", runtime={"name": "onnxruntime", "model": str(rejected_model),
                                                  "allow_unverified": True})
    record = matcher.extractor.describe()["runtime"]["verification"]
    assert record == {"passed": False, "report": "tiny.rejected.onnx.verify.json", "allow_unverified": True}
    image = image_pair(seed=4, side=160)[0]
    verified = Matcher.create("auto", runtime={"name": "onnxruntime", "model": str(onnx_model)})
    assert verified.extractor.describe()["runtime"]["verification"]["passed"] is True
    torch.testing.assert_close(matcher.extractor(image).features, verified.extractor(image).features)


def test_a_model_without_a_verification_record_is_refused(tiny, onnx_model, tmp_path):
    bare = tmp_path / "bare.onnx"
    shutil.copy(onnx_model, bare)
    props = {k: v for k, v in read_props(bare).items() if k.startswith("soco.") and k != VERIFICATION_KEY}
    write_props(bare, props)
    with pytest.raises(UnverifiedModelError, match="has no verification record") as refused:
        create_runtime(RuntimeSpec("onnxruntime", str(bare)), tiny)
    assert "bare.onnx.verify.json" in str(refused.value) and "--allow-unverified" in str(refused.value)
    with pytest.warns(UnverifiedModelWarning):
        runtime = create_runtime(RuntimeSpec("onnxruntime", str(bare), allow_unverified=True), tiny)
    assert runtime.describe()["verification"]["passed"] is None
    # a record that says anything but passed: true counts as failed
    write_props(bare, {**props, VERIFICATION_KEY: json.dumps({"passed": "yes", "checks": []})})
    with pytest.raises(UnverifiedModelError, match="FAILED verification: no checks were run"):
        create_runtime(RuntimeSpec("onnxruntime", str(bare)), tiny)


def test_soco_transfer_refuses_an_unverified_model_unless_allow_unverified(rejected_model, tmp_path, capsys):
    from PIL import Image
    demo, live = image_pair(seed=6, side=160)
    (tmp_path / "demo").mkdir()
    Image.fromarray(demo).save(tmp_path / "demo" / "rgb.png")
    (tmp_path / "demo" / "keypoints.json").write_text(json.dumps(
        {"keypoints": [{"name": "a", "xy": [40.0, 50.0]}, {"name": "b", "xy": [100.0, 90.0]}]}))
    Image.fromarray(live).save(tmp_path / "live.png")
    argv = ["transfer", "--demo", str(tmp_path / "demo"), "--live-rgb", str(tmp_path / "live.png"),
            "--segmentation", "none", "--runtime", "onnxruntime", "--runtime-model", str(rejected_model),
            "--out", str(tmp_path / "out")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "FAILED verification" in err and "tiny.rejected.onnx.verify.json" in err and "--allow-unverified" in err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedModelWarning)
        assert main(argv + ["--allow-unverified"]) == 0
    assert (tmp_path / "out").is_dir()


def _expected_trt_phrases(missing: list[str]) -> dict[str, bool]:
    """Which of the two things TensorRT needs the message must name, from what is missing on the machine."""
    return {"the tensorrt Python package": any("tensorrt Python package" in m for m in missing),
            "a CUDA GPU": any("CUDA GPU" in m for m in missing)}


@pytest.mark.skipif(not TRT_MISSING, reason="TensorRT is available here; the refusal path does not apply")
def test_tensorrt_export_exits_2_naming_what_this_machine_lacks(onnx_model, tmp_path, capsys):
    code = main(["export", "tensorrt", "--onnx", str(onnx_model), "--out", str(tmp_path / "m.engine")])
    assert code == 2
    err = capsys.readouterr().err
    assert "TensorRT is not usable on this machine" in err
    for phrase, missing in _expected_trt_phrases(TRT_MISSING).items():
        assert (phrase in err) == missing, (phrase, err)
    assert not (tmp_path / "m.engine").exists()


@pytest.mark.parametrize("has_package, has_gpu", [(False, True), (True, False), (False, False)])
def test_tensorrt_message_names_exactly_what_is_missing(has_package, has_gpu, onnx_model, tmp_path, capsys,
                                                        monkeypatch):
    """The machines CI does not have: a GPU without tensorrt, tensorrt without a GPU."""
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt") if has_package else None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: has_gpu)
    assert main(["export", "tensorrt", "--onnx", str(onnx_model), "--out", str(tmp_path / "m.engine")]) == 2
    err = capsys.readouterr().err
    assert ("the tensorrt Python package" in err) == (not has_package), err
    assert ("a CUDA GPU" in err) == (not has_gpu), err
    assert not list(tmp_path.iterdir())


def test_fast_fp16_comes_from_the_compute_capability():
    assert [has_fast_fp16(c) for c in ("9.0", "8.6", "7.5", "7.0", "6.2", "6.0", "5.3")] == [True] * 7
    assert [has_fast_fp16(c) for c in ("6.1", "5.2", "5.0", "3.7", "", "x.y")] == [False] * 6


def _fake_engine(tmp_path, onnx_model, **fields) -> tuple:
    engine = tmp_path / "tiny.engine"
    engine.write_bytes(b"serialised engine")
    values = dict(environment=BuildEnvironment("0.0.0", "Old GPU", "7.5"), onnx_path=str(onnx_model),
                  onnx_sha256=file_sha256(onnx_model), fp16=True, max_batch=2, input_name="images",
                  output_names=("features",), workspace_gb=1.5)
    values.update(fields)
    EngineRecord(**values).save(engine)
    return engine, EngineRecord(**values)


def test_a_stale_engine_is_rebuilt_with_its_recorded_settings(onnx_model, tmp_path, monkeypatch):
    now = BuildEnvironment("10.9", "New GPU", "8.9")
    monkeypatch.setattr(BuildEnvironment, "current", classmethod(lambda cls: now))
    builds = []

    def fake_build(onnx_path, engine_path, **settings):
        builds.append((str(onnx_path), settings))
        return "rebuilt"
    monkeypatch.setattr(tensorrt_engine, "build_engine", fake_build)
    engine, record = _fake_engine(tmp_path, onnx_model)
    # given the engine only (as the runtime is for an .engine file): the ONNX file and settings come from the record
    assert ensure_engine(None, engine, log=lambda m: None) == "rebuilt"
    path, settings = builds.pop()
    assert path == str(onnx_model)
    assert (settings["fp16"], settings["max_batch"], settings["workspace_gb"]) == (True, 2, 1.5)
    assert settings["allow_unverified"] is False
    # what the caller states explicitly wins over the record
    ensure_engine(onnx_model, engine, fp16=False, max_batch=4, log=lambda m: None)
    assert (builds[-1][1]["fp16"], builds[-1][1]["max_batch"], builds[-1][1]["workspace_gb"]) == (False, 4, 1.5)
    # a current engine is not rebuilt, and its record loads back equal (the environment as a BuildEnvironment)
    _fake_engine(tmp_path, onnx_model, environment=now)
    builds.clear()
    assert ensure_engine(None, engine, log=lambda m: None).environment == now and not builds
    # no ONNX file to rebuild from: a clear error
    _fake_engine(tmp_path, onnx_model, onnx_path=str(tmp_path / "gone.onnx"))
    with pytest.raises(ConfigError, match="gone.onnx' is not available to rebuild it"):
        ensure_engine(None, engine, log=lambda m: None)


def test_no_engine_is_built_from_an_unverified_onnx(rejected_model, tmp_path, monkeypatch):
    monkeypatch.setattr(BuildEnvironment, "current", classmethod(lambda cls: BuildEnvironment("10", "GPU", "8.9")))
    with pytest.raises(UnverifiedModelError, match="tiny.rejected.onnx.verify.json"):
        build_engine(rejected_model, tmp_path / "x.engine", log=lambda m: None)
    with pytest.raises(UnverifiedModelError, match="FAILED verification"):
        ensure_engine(rejected_model, tmp_path / "x.engine", fp16=False, log=lambda m: None)
    assert not (tmp_path / "x.engine").exists()


def test_engine_io_check_is_a_real_check(onnx_model, tmp_path):
    from correspondence.runtimes.onnx_runtime import read_metadata
    metadata = read_metadata(onnx_model)
    _, record = _fake_engine(tmp_path, onnx_model)
    reference = [np.ones((2, 64, 8, 8), np.float32)]
    assert engine_io_check(record, metadata, reference, [reference[0].copy()])[0].passed
    with_nan = reference[0].copy()
    with_nan[0, 0, 0, 0] = np.nan
    check, details = engine_io_check(record, metadata, reference, [with_nan])
    assert not check.passed and check.value < 1.0
    assert not engine_io_check(record, metadata, reference, [reference[0][:1]])[0].passed  # wrong shape
    renamed = EngineRecord(**{**record.__dict__, "output_names": ("block_3",)})
    assert not engine_io_check(renamed, metadata, reference, [reference[0].copy()])[0].passed


@needs_tensorrt
def test_tensorrt_engine_builds_verifies_and_matches_torch(tiny, onnx_model, scene, tmp_path):
    from export.tensorrt_build import build_and_verify
    engine = tmp_path / "tiny.engine"
    result = build_and_verify(onnx_model, engine, fp16=False, max_batch=2, log=lambda m: None)
    assert result.report.passed, result.report.text()
    assert result.path == engine and (tmp_path / "tiny.engine.verify.json").is_file()
    sidecar = json.loads((tmp_path / "tiny.engine.json").read_text())
    assert sidecar["environment"]["tensorrt_version"] and sidecar["environment"]["gpu_name"]
    assert sidecar["verification"]["passed"] is True and sidecar["max_batch"] == 2
    assert result.report.checks[0].name.startswith("engine I/O") and result.report.checks[0].passed
    demo, live = scene
    torch_matches = TransferPipeline(demo, Matcher.create(tiny, size=SIZE)).process(live).matches
    trt = Matcher.create("auto", device="cuda", runtime={"name": "tensorrt", "model": str(engine)})
    trt_matches = TransferPipeline(demo, trt).process(live).matches
    same = np.mean([a.live_xy == b.live_xy for a, b in zip(torch_matches, trt_matches)])
    assert same >= 0.95
    # an engine whose verification record failed is refused, and loads with allow_unverified
    sidecar["verification"]["passed"] = False
    (tmp_path / "tiny.engine.json").write_text(json.dumps(sidecar))
    with pytest.raises(UnverifiedModelError, match="tiny.engine.verify.json"):
        Matcher.create("auto", device="cuda", runtime={"name": "tensorrt", "model": str(engine)})
    with pytest.warns(UnverifiedModelWarning):
        Matcher.create("auto", device="cuda", runtime={"name": "tensorrt", "model": str(engine),
                                                       "allow_unverified": True})


@needs_tensorrt
def test_tensorrt_refuses_to_build_from_a_rejected_onnx(rejected_model, tmp_path, capsys):
    out = tmp_path / "r.engine"
    assert main(["export", "tensorrt", "--onnx", str(rejected_model), "--out", str(out)]) == 1
    assert "FAILED verification" in capsys.readouterr().err and not out.exists()


@needs_tensorrt
def test_tensorrt_engine_is_rebuilt_when_versions_differ(onnx_model, tmp_path):
    from correspondence.runtimes.tensorrt_engine import sidecar_path
    from correspondence.runtimes.tensorrt_runtime import TensorRTRuntime
    engine = tmp_path / "tiny.engine"
    first = ensure_engine(onnx_model, engine, fp16=True, max_batch=2, log=lambda m: None)
    assert first.fp16 and first.layers_forced_fp32 > 0  # LayerNorm held in fp32 under fp16
    data = json.loads(sidecar_path(engine).read_text())
    data["environment"]["tensorrt_version"] = "0.0.0"
    sidecar_path(engine).write_text(json.dumps(data))
    messages = []
    rebuilt = ensure_engine(None, engine, log=messages.append)  # settings from the record, not the defaults
    assert any("(re)building" in m for m in messages)
    assert rebuilt.fp16 and rebuilt.max_batch == 2
    stale = BuildEnvironment(**data["environment"])
    assert EngineRecord.load(engine).environment == rebuilt.environment == BuildEnvironment.current() != stale
    # the runtime verifies an engine it has no verification for before its first use, and records the result
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedModelWarning)  # the verdict itself is not what this test is about
        runtime = TensorRTRuntime(engine, allow_unverified=True, log=lambda m: None)
    recorded = EngineRecord.load(engine).verification
    assert recorded["report"] == "tiny.engine.verify.json" and (tmp_path / "tiny.engine.verify.json").is_file()
    assert recorded["checks"][0]["name"].startswith("engine I/O") and recorded["checks"][0]["passed"]
    assert runtime.describe()["verification"]["passed"] is recorded["passed"]


def test_a_verification_record_passes_only_when_every_check_passed():
    from correspondence.runtimes.metadata import VerificationRecord
    ok = {"name": "min cosine", "value": 1.0, "threshold": 0.9999, "passed": True}
    bad = {"name": "features: max abs error / max |reference|", "value": 0.5, "threshold": 0.001, "passed": False}
    assert VerificationRecord.parse({"passed": True, "checks": [ok]}).passed
    assert not VerificationRecord.parse({"passed": True, "checks": [ok, bad]}).passed  # contradicts itself
    assert not VerificationRecord.parse({"passed": True, "checks": []}).passed
    assert not VerificationRecord.parse("{not json").passed
    assert VerificationRecord.parse(None) is None and VerificationRecord.parse("") is None
    failed = VerificationRecord.parse({"passed": False, "checks": [ok, bad]})
    assert failed.failures == "features: max abs error / max |reference| 0.5 (needs <= 0.001)"
    nan = VerificationRecord(False, checks=({**bad, "value": float("nan")},))
    assert json.loads(nan.to_json())["checks"][0]["value"] == "nan"  # stored as strict JSON
