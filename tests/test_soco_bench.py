"""The SOCO benchmark evaluator on hand-made fixtures and on datasets written by `soco synth soco`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from correspondence.benchmarks.soco import ProtocolSettings, SocoPairs
from correspondence.benchmarks.soco.evaluator import KeypointResult, evaluate, reference_targets
from correspondence.benchmarks.soco.reductions import overall, per_category
from correspondence.benchmarks.soco.run import SocoBenchConfig, run_soco_benchmark
from correspondence.coords import Convention
from correspondence.errors import ConfigError, InputError
from correspondence.features import FeatureMap
from correspondence.preprocessing import PreprocessSettings, preprocess

SIZE, PATCH = 112, 14  # an 8 x 8 grid; images are 112 x 112 so processed == original


def keypoint(i: int, name: str, cell: tuple[int, int]) -> dict:
    concept = name.split("/")[0]
    return {"id": i, "name": name, "pos": [cell[0] * PATCH + 7.0, cell[1] * PATCH + 7.0], "concept_id": 0,
            "concept_name": concept, "kind": "structural", "shared": False}


def write_fixture(root: Path, target_cells: dict[str, tuple[int, int]]) -> None:
    """One intra pair of a 'cart': source wheels left (1,6) / right (6,6), target as given."""
    for name in ("src.JPEG", "trg.JPEG"):
        (root / "Images" / "cart").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (SIZE, SIZE), (120, 130, 140)).save(root / "Images" / "cart" / name)
    src = [keypoint(0, "wheel/left", (1, 6)), keypoint(1, "wheel/right", (6, 6)), keypoint(2, "roof", (3, 1))]
    trg = [keypoint(i, n, c) for i, (n, c) in enumerate(target_cells.items())]
    pair = {"pair_id": 1, "pair_group": "cart", "category": "cart", "src_category": "cart", "trg_category": "cart",
            "src_image": "src.JPEG", "trg_image": "trg.JPEG", "src_imsize": [SIZE, SIZE], "trg_imsize": [SIZE, SIZE],
            "src_bndbox": [0, 0, SIZE, SIZE], "trg_bndbox": [0, 0, SIZE, SIZE], "src_keypoints": src,
            "trg_keypoints": trg, "semantic_overlap": [k["name"] for k in src if k["name"] in target_cells],
            "concept_matches": [{"concept_name": "wheel", "src_keypoints": ["wheel/left", "wheel/right"],
                                 "trg_keypoints": [n for n in target_cells if n.startswith("wheel")]},
                                {"concept_name": "roof", "src_keypoints": ["roof"], "trg_keypoints": ["roof"]}]}
    (root / "PairAnnotations" / "intra" / "cart").mkdir(parents=True, exist_ok=True)
    (root / "PairAnnotations" / "intra" / "cart" / "0000001.json").write_text(json.dumps(pair))


def oracle(channel_of) -> callable:
    """Features that encode the annotation: the cell holding keypoint k gets a one-hot vector for
    ``channel_of(name)``; every other cell a weak background vector."""
    def features(view) -> FeatureMap:
        _, geometry = preprocess(np.zeros((view.size[1], view.size[0], 3), np.uint8),
                                 PreprocessSettings(size=SIZE), PATCH)
        grid = torch.zeros(16, SIZE // PATCH, SIZE // PATCH)
        grid[15] = 0.05
        for k in view.keypoints:
            col, row = int(k.xy[0] // PATCH), int(k.xy[1] // PATCH)
            grid[:, row, col] = 0
            grid[channel_of(k.name), row, col] = 1.0
        return FeatureMap(grid, geometry, PATCH, Convention.PATCH_CENTER)
    return features


SETTINGS = ProtocolSettings(size=SIZE, convention="patch-center", arithmetic="float64", tasks=("cc", "soc", "geo"))
IDENTITY = {"wheel/left": 1, "wheel/right": 2, "roof": 3}


def test_oracle_scores_100_on_every_task(tmp_path):
    write_fixture(tmp_path, {"wheel/right": (2, 5), "wheel/left": (5, 5), "roof": (4, 0)})
    run = evaluate(SocoPairs(tmp_path), oracle(IDENTITY.get), SETTINGS, progress=False)
    for task in ("cc", "soc", "geo"):
        for i in range(3):
            assert overall(run.records, task, i, "pair-category-mean") == 100.0


def test_wrong_instance_of_the_same_concept_counts_for_cc_not_soc(tmp_path):
    # concept-level oracle: both wheels share a channel; the target's *right* wheel comes first in row-major
    # order, so the argmax tie between the two wheels picks it for the source's left wheel
    write_fixture(tmp_path, {"wheel/right": (2, 3), "wheel/left": (5, 5), "roof": (4, 0)})
    concept_oracle = oracle(lambda name: 1 if name.startswith("wheel") else 3)
    run = evaluate(SocoPairs(tmp_path), concept_oracle, SETTINGS, progress=False)
    by = {(r.task, r.keypoint): r.correct[0] for r in run.records}
    assert by[("cc", "wheel/left")] and not by[("soc", "wheel/left")]
    assert by[("soc", "roof")] and by[("cc", "roof")]
    # SOC-geo restricts to wheel patches too, so it fails the same way here
    assert not by[("geo", "wheel/left")]
    # the paper's SOC-geo (the default) needs at least 2 candidates: the roof (one candidate) is not evaluated;
    # the single-candidate variant counts it (a free hit), with chance level 1
    assert {r.keypoint for r in run.records if r.task == "geo"} == {"wheel/left", "wheel/right"}
    assert {r.chance for r in run.records if r.task == "geo"} == {0.5}
    from dataclasses import replace
    loose = evaluate(SocoPairs(tmp_path), concept_oracle, replace(SETTINGS, geo_min_candidates=1), progress=False)
    geo = {r.keypoint: r for r in loose.records if r.task == "geo"}
    assert set(geo) == {"wheel/left", "wheel/right", "roof"} and geo["roof"].correct[0] and geo["roof"].chance == 1.0


def test_reductions_match_hand_computation():
    def rec(pair, group, ok):
        return KeypointResult(pair, group, "intra", "soc", "k", 0.0, 1.0, (ok,))
    records = [rec(1, "a", True), rec(1, "a", False), rec(2, "a", True),  # pair means 0.5, 1.0 -> a = 75
               rec(3, "b", False), rec(3, "b", False), rec(3, "b", False), rec(3, "b", True)]  # b = 25
    assert per_category(records, "soc", 0, "pair-category-mean") == {"a": 75.0, "b": 25.0}
    assert overall(records, "soc", 0, "pair-category-mean") == 50.0
    assert per_category(records, "soc", 0, "keypoint-category-mean") == pytest.approx({"a": 200 / 3, "b": 25.0})
    assert overall(records, "soc", 0, "pooled") == pytest.approx(100 * 3 / 7)


def test_reference_targets_apply_both_truncations():
    _, geometry = preprocess(np.zeros((300, 500, 3), np.uint8), PreprocessSettings(size=800), 14)
    fmap = FeatureMap(torch.zeros(1, 57, 57), geometry, 14, Convention.SOCO)
    target = reference_targets(fmap, np.array([[333.9, 120.7]]))
    assert target[0, 0] == pytest.approx(int(333 * 798 / 500) * 500 / 798)


def test_threshold_is_strict_and_uses_the_target_box(tmp_path):
    from correspondence.benchmarks.soco.reference import Frame
    write_fixture(tmp_path, {"wheel/right": (2, 5), "wheel/left": (5, 5), "roof": (4, 0)})
    pair = SocoPairs(tmp_path)[0]
    side = pair.target.bbox_max_side
    assert side == SIZE
    fmap = oracle(IDENTITY.get)(pair.target)
    exact = Frame(fmap, pair.target, SETTINGS)  # float64: original pixels against alpha * box side
    assert exact.correct(torch.tensor([0.1 * side, 0.1 * side - 1e-9], dtype=torch.float64), (0.1,)).tolist() == \
        [[False], [True]]  # strict <
    soco = FeatureMap(fmap.features, fmap.geometry, PATCH, Convention.SOCO)
    reference = Frame(soco, pair.target, ProtocolSettings(size=SIZE))  # error / scale < alpha in float32
    assert reference.scale == 1.0
    assert reference.correct(torch.tensor([0.1, 0.0999999], dtype=torch.float32), (0.1,)).tolist() == [[False], [True]]


def test_loader_errors_name_file_and_field(tmp_path):
    write_fixture(tmp_path, {"wheel/right": (2, 5), "wheel/left": (5, 5), "roof": (4, 0)})
    with pytest.raises(InputError, match="unknown intra categories"):
        SocoPairs(tmp_path, categories=["spaceship"])
    path = tmp_path / "PairAnnotations" / "intra" / "cart" / "0000001.json"
    data = json.loads(path.read_text())
    del data["trg_imsize"]
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"0000001.json: missing field 'trg_imsize'"):
        SocoPairs(tmp_path)[0]
    path.write_text("{broken")
    with pytest.raises(InputError, match="not valid JSON"):
        SocoPairs(tmp_path)[0]
    write_fixture(tmp_path, {"wheel/right": (2, 5), "wheel/left": (5, 5), "roof": (4, 0)})
    (tmp_path / "Images" / "cart" / "trg.JPEG").unlink()
    with pytest.raises(InputError, match="trg.JPEG' is missing"):
        SocoPairs(tmp_path)[0].target.image


@pytest.fixture(scope="module")
def synthetic_soco(tmp_path_factory):
    from correspondence.world.synth import SynthConfig, synth_soco
    root = tmp_path_factory.mktemp("soco")
    synth_soco(SynthConfig(out=str(root), categories=("car", "bus", "mug", "cup", "chair", "stool"), views=6,
                           size=128, pairs_per_category=5, cross_pairs_per_group=4, seed=1, progress=False))
    return root


def test_cc_is_never_worse_than_soc_per_keypoint_and_runs_are_deterministic(synthetic_soco, tmp_path):
    from correspondence.backbones import create_backbone
    settings = ProtocolSettings(size=224)
    config = SocoBenchConfig(str(synthetic_soco), str(tmp_path / "a"), progress=False)
    first = run_soco_benchmark(config, settings, create_backbone("test_vit_tiny"))
    errors: dict[tuple, dict[str, float]] = {}
    for r in first["run"].records:
        errors.setdefault((r.pair_id, r.pair_type, r.keypoint), {})[r.task] = r.error_px
    pairs = [(v["soc"], v["cc"]) for v in errors.values() if "soc" in v and "cc" in v]
    assert pairs and all(cc <= soc + 1e-9 for soc, cc in pairs)
    second = run_soco_benchmark(SocoBenchConfig(str(synthetic_soco), str(tmp_path / "b"), progress=False), settings,
                                create_backbone("test_vit_tiny"))
    a = json.loads(Path(first["paths"]["results"]).read_text())
    b = json.loads(Path(second["paths"]["results"]).read_text())
    for record in (a, b):
        record.pop("timing")
    assert a == b
    assert a["features"]["effective_image_size"] == 224 and a["features"]["grid"] == 16
    assert a["dataset"]["counts"]["intra"]["pairs"] > 0 and a["dataset"]["counts"]["cross"]["pairs"] > 0
    used = {str(v.image_path) for t in ("intra", "cross") for p in SocoPairs(synthetic_soco, t)
            for v in (p.source, p.target)}
    n_pairs = first["run"].pairs
    assert first["timing"]["images_encoded"] == len(used) < 2 * n_pairs  # every image once, however many pairs
    assert first["timing"]["cache_hits"] == 2 * n_pairs - len(used)
    for name in ("results.md", "pck_vs_alpha.png", "per_category.png", "qualitative_0.png"):
        assert (tmp_path / "a" / name).is_file()


def test_oracle_on_a_synthetic_dataset(synthetic_soco):
    """Oracle features at the synthetic annotations: SOC and Cross-SOC at 100 at alpha 0.1. (No background vector:
    the protocol normalises every cell before sampling, so a weak background would weigh as much as a keypoint.)"""
    settings = ProtocolSettings(size=128, convention="patch-center", arithmetic="float64")
    cells = 128 // 4
    channel: dict[str, int] = {}  # one channel per keypoint name (a stable vocabulary, no hash collisions)

    def features(view) -> FeatureMap:
        _, geometry = preprocess(np.zeros((view.size[1], view.size[0], 3), np.uint8),
                                 PreprocessSettings(size=128), 4)
        grid = torch.zeros(128, cells, cells)
        for k in view.keypoints:
            col, row = int(k.xy[0] // 4), int(k.xy[1] // 4)
            grid[:, row, col] = 0
            grid[channel.setdefault(k.name, len(channel)), row, col] = 1.0
        return FeatureMap(grid, geometry, 4, Convention.PATCH_CENTER)

    pairs = list(SocoPairs(synthetic_soco, "intra")) + list(SocoPairs(synthetic_soco, "cross"))
    run = evaluate(pairs, features, settings, progress=False)
    assert overall(run.records, "soc", 0, "pair-category-mean") == 100.0
    assert overall(run.records, "cross", 0, "pair-category-mean") == 100.0


def _random_features(view) -> FeatureMap:
    """A 'random backbone': features that carry no information about the image."""
    import zlib
    _, geometry = preprocess(np.zeros((view.size[1], view.size[0], 3), np.uint8), PreprocessSettings(size=112), 14)
    generator = torch.Generator().manual_seed(zlib.crc32(str(view.image_path).encode()))
    return FeatureMap(torch.randn(32, 8, 8, generator=generator), geometry, 14, Convention.PATCH_CENTER)


def test_four_choice_circular_eval_of_a_random_backbone_is_chance(synthetic_soco):
    from scipy.stats import binomtest

    from correspondence.benchmarks.soco.four_choice import evaluate_backbone, evaluate_random
    pairs = list(SocoPairs(synthetic_soco, "intra")) + list(SocoPairs(synthetic_soco, "train"))
    result = evaluate_backbone(pairs, _random_features, seed=3)
    n = result["questions"]
    assert n >= 100
    k = round(result["circular_accuracy"] * n / 100)
    interval = binomtest(k, n, 0.25).proportion_ci(confidence_level=0.999)
    assert interval.low <= 0.25 <= interval.high
    plus = evaluate_random(pairs, seed=3, consistent=True)
    assert binomtest(round(plus["circular_accuracy"] * n / 100), n, 0.25).pvalue > 0.001
    assert evaluate_random(pairs, seed=3, consistent=False)["circular_accuracy"] < 5.0  # 1/256 expected


def test_oracle_answers_every_four_choice_question(tmp_path):
    write_fixture(tmp_path, {"wheel/right": (2, 5), "wheel/left": (5, 5), "roof": (4, 0), "door": (3, 3)})
    from correspondence.benchmarks.soco.four_choice import evaluate_backbone
    result = evaluate_backbone(list(SocoPairs(tmp_path)), oracle({**IDENTITY, "door": 4}.get), settings=SETTINGS)
    assert result["questions"] == 3 and result["circular_accuracy"] == 100.0


def test_linear_probe_starts_as_identity_learns_and_reloads(synthetic_soco, tmp_path):
    from dataclasses import replace

    from correspondence.backbones import create_backbone
    from correspondence.benchmarks.soco.features_store import FeatureStore
    from correspondence.benchmarks.soco.probe import LinearProbe, ProbeConfig, train_probe
    from correspondence.features import FeatureExtractor
    settings = ProtocolSettings(size=112, tasks=("cc", "soc"))
    store = FeatureStore(FeatureExtractor(create_backbone("test_vit_tiny"), settings.extraction(), cache_size=0))
    grid = torch.randn(64, 4, 4)
    assert torch.equal(LinearProbe(64)(grid), grid)  # identity weight, zero bias: the frozen features, exactly
    training = train_probe(list(SocoPairs(synthetic_soco, "train")), store, settings, ProbeConfig(epochs=4, lr=1e-2),
                           progress=False)
    assert training.epoch_losses[-1] < training.epoch_losses[0] and training.selected_epoch == 4
    path = training.probe.save(tmp_path / "probe.safetensors", {"note": "test"})
    again = LinearProbe.load(path)
    assert torch.equal(training.probe(grid), again(grid)) and not torch.allclose(training.probe(grid), grid)
    exact = replace(settings, arithmetic="float64")  # the float64 geometry trains too
    assert len(train_probe(list(SocoPairs(synthetic_soco, "train")), store, exact, ProbeConfig(epochs=1),
                           progress=False).step_losses) == 1
    with pytest.raises(ConfigError, match="score_epoch"):
        train_probe(list(SocoPairs(synthetic_soco, "train")), store, settings,
                    ProbeConfig(epoch_selection="best-on-test"), progress=False)


@pytest.mark.parametrize("method", ["argmax", "soft-argmax"])
def test_predict_never_assumes_plain_cpu_tensors(tmp_path, method):
    """Features that require grad (a probe without no_grad) and fp16 maps: predictions still come back as numpy
    (every tensor leaves torch through to_numpy, which also moves it off a GPU)."""
    from dataclasses import replace

    from correspondence.benchmarks.soco.evaluator import predict
    write_fixture(tmp_path, {"wheel/right": (2, 5), "wheel/left": (5, 5), "roof": (4, 0)})
    pair = SocoPairs(tmp_path)[0]
    features = oracle(IDENTITY.get)
    source = features(pair.source)
    source = replace(source, features=source.features.clone().requires_grad_(True))
    target = replace(features(pair.target), features=features(pair.target).features.half())
    xy = np.array([k.xy for k in pair.source.keypoints])
    settings = ProtocolSettings(size=SIZE, convention="patch-center", arithmetic="float64", method=method)
    predicted = predict(source, target, xy, settings)
    allowed = predict(source, target, xy, settings, allowed=[np.array([0, 1]), np.array([2]), np.array([3])])
    assert isinstance(predicted, np.ndarray) and predicted.shape == (3, 2) and allowed.shape == (3, 2)
    assert np.allclose(predicted[2], [4 * PATCH + 7, 7], atol=1.0)  # the roof


@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_feature_store_gives_the_same_maps_from_memory_disk_and_prefetch(synthetic_soco, tmp_path, storage):
    from correspondence.backbones import create_backbone
    from correspondence.benchmarks.soco.features_store import FeatureStore
    from correspondence.features import FeatureExtractor
    settings = ProtocolSettings(size=112)
    extractor = FeatureExtractor(create_backbone("test_vit_tiny"), settings.extraction(), cache_size=0)
    pairs = list(SocoPairs(synthetic_soco, "intra"))[:3]
    views = [v for p in pairs for v in (p.source, p.target)]
    first = FeatureStore(extractor, tmp_path / "cache", storage=storage)
    maps = [first(v) for v in views]
    assert first.stats.encoded == len({str(v.image_path) for v in views})
    assert first.stats.hits == len(views) - first.stats.encoded
    again = FeatureStore(extractor, tmp_path / "cache", storage=storage)
    from_disk = [again(v) for v in views]
    assert again.stats.encoded == 0 and again.stats.disk_hits == first.stats.encoded
    other = FeatureStore(extractor, tmp_path / "cache", storage="float16" if storage == "float32" else "float32")
    other(views[0])
    assert other.stats.disk_hits == 0  # the disk cache is keyed by the storage dtype
    prefetched = FeatureStore(extractor, storage=storage)
    prefetched.encode_distributed(views, progress=False)  # one process: a plain prefetch
    from_prefetch = [prefetched(v) for v in views]
    assert prefetched.stats.hits == first.stats.hits  # the first use of a prefetched map is not a cache hit
    expected = {"float32": torch.float32, "float16": torch.float16}[storage]
    for a, b, c in zip(maps, from_disk, from_prefetch):
        assert a.features.dtype == b.features.dtype == c.features.dtype == expected
        assert a.features.device == b.features.device == c.features.device == extractor.device
        assert torch.equal(a.features, b.features) and torch.equal(a.features, c.features)
        assert a.grid_wh == b.grid_wh and a.geometry == b.geometry


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_bench_soco_on_a_missing_gpu_is_one_sentence(tmp_path, capsys):
    from correspondence.cli import main
    write_fixture(tmp_path, {"wheel/right": (2, 5), "wheel/left": (5, 5), "roof": (4, 0)})
    code = main(["bench", "soco", "--root", str(tmp_path), "--backbone", "test_vit_tiny", "--random-weights",
                 "--device", "cuda", "--out", str(tmp_path / "out")])
    assert code == 1 and "CUDA is not available on this machine" in capsys.readouterr().err


def test_a_device_budget_keeps_further_maps_in_host_memory(synthetic_soco):
    from correspondence.backbones import create_backbone
    from correspondence.benchmarks.soco.features_store import FeatureStore
    from correspondence.features import FeatureExtractor
    extractor = FeatureExtractor(create_backbone("test_vit_tiny"), ProtocolSettings(size=112).extraction(),
                                 cache_size=0)
    views = [v for p in list(SocoPairs(synthetic_soco, "intra"))[:2] for v in (p.source, p.target)]
    store = FeatureStore(extractor, device_budget=1)  # nothing fits "on the device"
    maps = [store(v) for v in views]
    assert store.stats.device_bytes == 0 and store.stats.host_bytes > 0
    assert all(m.features.device == extractor.device for m in maps)  # handed out on the device all the same
    assert store.memory_estimate(10, 64) == 10 * 64 * 8 * 8 * 4


def test_soft_argmax_window_semantics_follow_the_reference():
    """window > 0: the (2w+1)^2 box around the argmax; 0: the whole map (OmniProbe's soft_eval_window=0)."""
    from correspondence.benchmarks.soco.reference import soft_argmax
    maps = torch.full((1, 5, 5), -1.0)
    maps[0, 2, 2] = 1.0
    maps[0, 0, 4] = 0.99  # far from the argmax: outside a half-width-1 window, inside the whole map
    windowed = soft_argmax(maps, beta=0.02, window=1)[0]
    assert torch.allclose(windowed, torch.tensor([2.0, 2.0]), atol=1e-6)
    whole = soft_argmax(maps, beta=0.02, window=0)[0]
    weight = 1 / (1 + float(np.exp(-0.01 / 0.02)))  # softmax of the two peaks (the rest is ~0)
    expected = torch.tensor([2 * weight + 4 * (1 - weight), 2 * weight])
    assert torch.allclose(whole, expected, atol=1e-4)


def test_settings_refuse_nonsense_and_variants_are_named():
    from correspondence.benchmarks.soco.protocol import PRESETS, VARIANTS, preset, variant
    from correspondence.errors import ConfigError
    for name in PRESETS:  # the paper protocols: every point of the released code
        p = preset(name)
        assert (p.normalise, p.query, p.arithmetic, p.geo_min_candidates, p.geo_candidates, p.geo_reduction,
                p.storage) == ("before-sampling", "as-sampled", "reference", 2, "targets", "keypoint-category-mean",
                               "float32")
    legacy = variant(preset("soco-798"), "legacy")
    assert legacy.normalise == "after-sampling" and legacy.storage == "float16"
    assert legacy.extra["variants"] == ["legacy"] and set(VARIANTS) >= {"fp16-storage", "geo-single-candidate"}
    with pytest.raises(ConfigError, match="unknown variant"):
        variant(preset("soco-798"), "fast")
    with pytest.raises(ConfigError, match="arithmetic='float64'"):
        ProtocolSettings(convention="patch-center")
    with pytest.raises(ConfigError, match="storage"):
        ProtocolSettings(storage="int8")


def test_one_command_gives_the_same_numbers_cold_and_warm(synthetic_soco, tmp_path, capsys):
    """`soco bench soco` twice with one --feature-cache: encoded (cold) then read back (warm), fp32 and fp16
    storage; results.json is identical but for the timing. The warm run encodes nothing, so it claims no encode
    time per image and no caching speed-up (a disk read divided by one image made the cache look useless)."""
    from correspondence.cli import main
    for storage in ("float32", "float16"):
        records, printed = [], []
        for run in ("cold", "warm"):
            out = tmp_path / f"{storage}_{run}"
            code = main(["bench", "soco", "--root", str(synthetic_soco), "--backbone", "test_vit_tiny",
                         "--random-weights", "--categories", "car", "--max-pairs-per-category", "2", "--task", "soc,geo",
                         "--soft-argmax",
                         "--storage", storage, "--feature-cache", str(tmp_path / f"cache_{storage}"),
                         "--no-progress", "--out", str(out)])
            assert code == 0
            record = json.loads((out / "results.json").read_text())
            records.append(record)
            printed.append(capsys.readouterr().out)
        cold, warm = records
        assert cold["timing"]["images_encoded"] > 0 and warm["timing"]["images_encoded"] == 0
        assert warm["timing"]["disk_hits"] == cold["timing"]["images_encoded"]
        assert cold["timing"]["seconds_per_image"] > 0 and cold["timing"]["caching_speedup"] > 0
        assert warm["timing"]["seconds_per_image"] is None and warm["timing"]["caching_speedup"] is None
        assert warm["timing"]["estimated_seconds_encoding_per_pair"] is None and "caching_note" in warm["timing"]
        assert warm["timing"]["disk_read_seconds"] > 0 and warm["timing"]["seconds_per_disk_read"] > 0
        assert "images encoded once each" in printed[0] and "caching speed-up x" in printed[0]
        assert "0 images encoded" in printed[1] and "maps read from the disk cache" in printed[1]
        assert "ms per image" not in printed[1] and "caching speed-up x" not in printed[1]
        for record in records:
            for key in ("timing", "machine"):
                record.pop(key)
            record["feature_memory"].pop("device_bytes")
            record["feature_memory"].pop("host_bytes")
        assert cold == warm
        assert cold["protocol"]["storage"] == storage


def write_paper_tables(folder: Path, categories: list[str]) -> Path:
    """A paper-table folder in the published layout with made-up numbers (the real one is not part of the tests)."""
    folder.mkdir(parents=True, exist_ok=True)
    sc = ("Transportation", "Hand-held", "Furniture", "Animals")
    rows = {"DINOv1": 1.0, "DINOv2": 2.0}
    (folder / "soco_table2.tsv").write_text("model\tCC\tSOC\tCross-SOC\tAvg\t" + "\t".join(f"SOC_{s}" for s in sc)
                                            + "\n" + "".join(f"{m}\t" + "\t".join(f"{v + i / 10:.1f}" for i in range(8))
                                                              + "\n" for m, v in rows.items()))
    (folder / "soco_table_r1_supercategories.tsv").write_text(
        "model\t" + "\t".join(f"{s}_{t}" for s in sc for t in ("SOC", "CC")) + "\n"
        + "".join(f"{m.upper()}\t" + "\t".join("3.25" for _ in range(8)) + "\n" for m in rows))
    (folder / "soco_table_r2_protocols.tsv").write_text(
        "model\tSOC_soft_argmax\tSOC_linear_probe\tSOC_geo\n" + "".join(f"{m}\t4.5\t5.5\t6.5\n" for m in rows))
    cols = [f"{r}_{t}@{a}" for r in ("pair", "kpt") for a in ("0.10", "0.05", "0.02") for t in ("SOC", "CC")]
    (folder / "soco_table_r3_thresholds.tsv").write_text(
        "model\t" + "\t".join(cols) + "\n" + "".join(f"{m.upper()}\t" + "\t".join("7.25" for _ in cols) + "\n"
                                                   for m in rows))
    cols = [f"{t}@{a}" for a in ("0.10", "0.05", "0.02") for t in ("CC", "SOC")]
    (folder / "soco_table_r6_per_category_dinov2b.tsv").write_text(
        "category\t" + "\t".join(cols) + "\n" + "".join(f"{c}\t" + "\t".join("8.5" for _ in cols) + "\n"
                                                      for c in categories))
    (folder / "README.md").write_text("SOC-geo (... chance level 12.34 %).\n")
    return folder


def test_reports_show_published_rows_beside_ours(tmp_path, capsys):
    from correspondence.cli import main
    write_fixture(tmp_path / "data", {"wheel/right": (2, 5), "wheel/left": (5, 5), "roof": (4, 0)})
    tables = write_paper_tables(tmp_path / "tables", ["aeroplane", "cart", "zebra"])
    base = ["bench", "soco", "--root", str(tmp_path / "data"), "--backbone", "test_vit_tiny", "--random-weights",
            "--protocol", "soco-798", "--task", "cc,soc,geo", "--paper-tables", str(tables), "--no-progress"]
    assert main(base + ["--out", str(tmp_path / "all")]) == 0
    text = (tmp_path / "all" / "results.md").read_text()
    for table in ("Table 2", "Table r1", "Table r2", "Table r3"):
        assert f"*published: DINOv2* ({table}" in text or f"*published: DINOV2* ({table}" in text
    assert "every published row shown" in text and "*published: DINOv1*" in text  # no row is test_vit_tiny
    assert "| 12.34 |" in text  # the paper's SOC-geo chance level beside ours
    # a hand-made set whose categories are released ones: the per-category table lists all of them, in order
    assert "| aeroplane | n/a" in text and "| zebra | n/a" in text and "*published DINOv2-B* CC @0.1" in text
    assert text.index("| aeroplane |") < text.index("| cart |") < text.index("| zebra |")
    assert main(base + ["--paper-model", "DINOv2", "--out", str(tmp_path / "one")]) == 0
    one = (tmp_path / "one" / "results.md").read_text()
    assert "*published: DINOv1*" not in one and "*published: DINOv2* (Table 2, PCK@0.1) | 2.0 | 2.1" in one
    record = json.loads((tmp_path / "one" / "results.json").read_text())
    assert record["published"]["model"] == "DINOv2" and record["published"]["released_dataset"]
    capsys.readouterr()
    assert main(["bench", "compare", str(tmp_path / "one"), "published:DINOv2", "--paper-tables", str(tables)]) == 0
    table = capsys.readouterr().out
    assert "| test_vit_tiny | soco-798 | PCK@0.1 |" in table
    assert "| *published: DINOv2* | paper (Table 2, r2) | PCK@0.1 | 2.0 | 2.1 | 2.2 | 6.5 | 12.34 | 2.3 |" in table
    assert "| *published: DINOv2* | pair | 7.25 |" in table


def test_any_departure_from_the_paper_protocol_is_a_variant_kept_out_of_the_published_columns(tmp_path, capsys):
    """--geo-min-candidates 1 is --variant geo-single-candidate, --storage float16 is fp16-storage: however spelled,
    the run is recorded as a variant and results.md shows no published row beside it (an all-candidates SOC-geo
    sat in Table r2's SOC-geo column above the paper's multi-candidate numbers)."""
    from correspondence.benchmarks.soco.protocol import departures, preset, variant
    from correspondence.cli import main
    write_fixture(tmp_path / "data", {"wheel/right": (2, 5), "wheel/left": (5, 5), "roof": (4, 0)})
    tables = write_paper_tables(tmp_path / "tables", ["cart"])
    base = ["bench", "soco", "--root", str(tmp_path / "data"), "--backbone", "test_vit_tiny", "--random-weights",
            "--task", "cc,soc,geo", "--paper-tables", str(tables), "--paper-model", "DINOv2", "--no-progress",
            "--feature-cache", str(tmp_path / "cache")]
    runs = {"flag": ["--geo-min-candidates", "1"], "variant": ["--variant", "geo-single-candidate"],
            "storage": ["--storage", "float16"], "three": ["--geo-min-candidates", "3"], "paper": []}
    want = {"flag": ["geo-single-candidate"], "variant": ["geo-single-candidate"], "storage": ["fp16-storage"],
            "three": ["geo_min_candidates=3 (paper 2)"], "paper": []}
    for name, extra in runs.items():
        assert main(base + extra + ["--out", str(tmp_path / name)]) == 0
        printed = capsys.readouterr().out
        record = json.loads((tmp_path / name / "results.json").read_text())
        assert record["protocol"]["departures"] == want[name]
        text = (tmp_path / name / "results.md").read_text()
        if want[name]:
            assert "*published:" not in text and "published rows left out" in text
            assert f"variant: {want[name][0]}" in text and "Variant run, not the paper protocol" in text
            assert "variant run, not the paper protocol" in printed
        else:
            assert "*published: DINOv2* (Table r2) | 4.5 | 5.5 | 6.5 |" in text and "variant:" not in text
            assert "Variant run" not in text and "left out" not in text
    capsys.readouterr()
    assert main(["bench", "compare", str(tmp_path / "flag"), str(tmp_path / "paper"), "published:DINOv2",
                 "--paper-tables", str(tables)]) == 0
    compared = capsys.readouterr().out
    assert "soco-798 (variant: geo-single-candidate; not the paper protocol)" in compared
    assert "| test_vit_tiny | soco-798 | PCK@0.1 |" in compared
    # the same marking from the settings alone, whatever set them
    assert departures(preset("soco-grid60")) == [] and departures(ProtocolSettings(size=224)) == [
        "size=224 (paper 800)"]
    assert departures(variant(preset("soco-798"), "legacy")) == [
        "sample-then-normalise", "float64-geometry", "geo-single-candidate", "geo-patch-candidates",
        "geo-run-reduction", "fp16-storage"]
    assert departures(preset("soco-798", method="soft-argmax", beta=0.05)) == [
        "soft-argmax beta=0.05 window=7 (paper 0.02, 7)"]
    # a paper soft-argmax run: only Table r2 has a soft-argmax column; the other tables publish argmax numbers
    from correspondence.benchmarks.soco.report import published_exclusions
    assert set(published_exclusions(preset("soco-798", method="soft-argmax"))) == {"table2", "r1", "r3", "r6"}
    assert set(published_exclusions(preset("soco-798", reduction="pooled"))) == {"table2", "r1", "r6"}
    assert published_exclusions(preset("soco-grid60")) == {}


def test_synthetic_sets_are_not_the_released_one(synthetic_soco, tmp_path):
    from correspondence.benchmarks.soco.published import PublishedTables, paper_model
    from correspondence.benchmarks.soco.report import is_released
    tables = PublishedTables.load(write_paper_tables(tmp_path / "tables", ["car", "bus", "mug", "cup", "chair",
                                                                           "stool"]))
    assert not is_released(synthetic_soco, tables)  # written by `soco synth soco`, whatever its category names
    assert paper_model("dinov2_vitb14") == "DINOv2" and paper_model("dinov2_vits14") is None


def test_subsets_from_a_list_file_and_the_released_check(synthetic_soco, tmp_path):
    from correspondence.benchmarks.soco.run import SocoBenchConfig, pair_sets
    settings = ProtocolSettings(size=112)
    intra = sorted((synthetic_soco / "PairAnnotations" / "intra").rglob("*.json"))[:3]
    cross = sorted((synthetic_soco / "PairAnnotations" / "cross").rglob("*.json"))[:2]
    listing = tmp_path / "subset.txt"
    listing.write_text("# a fixed subset\n" + "".join(
        f"{p.relative_to(synthetic_soco / 'PairAnnotations').as_posix()}\n" for p in intra + cross))
    sets, record = pair_sets(SocoBenchConfig(str(synthetic_soco), str(tmp_path), subsets=str(listing)), settings,
                             synthetic_soco)
    assert [p.path for p in sets["intra"]] == intra and len(sets["cross"]) == 2
    assert record["pairs"] == {"intra": 3, "cross": 2}
    sets, record = pair_sets(SocoBenchConfig(str(synthetic_soco), str(tmp_path), subsets="released"), settings,
                             synthetic_soco)
    assert "not the complete released SOCO v1" in record["warning"]
    with pytest.raises(InputError, match="--subsets fixes the pairs"):
        pair_sets(SocoBenchConfig(str(synthetic_soco), str(tmp_path), subsets="released", max_pairs_per_category=2),
                  settings, synthetic_soco)
    listing.write_text("intra/car/missing.json\n")
    with pytest.raises(InputError, match="do not exist"):
        pair_sets(SocoBenchConfig(str(synthetic_soco), str(tmp_path), subsets=str(listing)), settings, synthetic_soco)


def test_linear_probe_run_records_the_reference_recipe_beside_the_published_row(synthetic_soco, tmp_path):
    """results.json says which recipe ran (and how the features differ from the reference probe's soco-798);
    results.md shows it and the paper's linear-probe row beside ours."""
    from correspondence.backbones import create_backbone
    from correspondence.benchmarks.soco.probe import LinearProbe, ProbeConfig
    tables = write_paper_tables(tmp_path / "tables", ["car", "mug"])
    config = SocoBenchConfig(str(synthetic_soco), str(tmp_path / "out"), pair_types=("intra",),
                             categories=("car", "mug"), linear_probe=True, progress=False, paper_tables=str(tables),
                             paper_model="DINOv2", probe=ProbeConfig(epochs=2, epoch_selection="best-on-test"))
    result = run_soco_benchmark(config, ProtocolSettings(size=112, tasks=("cc", "soc")),
                                create_backbone("test_vit_tiny"))
    record = json.loads(Path(result["paths"]["results"]).read_text())["summary"]["linear_probe"]
    assert record["recipe"]["epoch_selection"] == "best-on-test" and record["recipe"]["seed"] == 8
    assert record["recipe"]["batch_pairs"] == 32 and record["recipe"]["temperature"] == 0.07
    assert [s["epoch"] for s in record["epoch_test_scores"]] == [1, 2] and record["selected_epoch"] in (1, 2)
    assert record["protocol_differences"] == ["size: 112 (reference 800)"]
    assert set(record["probe"]["per_class"]["soc"]) == {"car", "mug"} and record["test_classes"] == 2
    assert record["probe"]["soc"]["0.1"] is not None and record["base"]["cc"]["0.1"] is not None
    text = (tmp_path / "out" / "results.md").read_text()
    assert "## Linear probe: the reference's recipe" in text and "the best on the test split" in text
    assert "| *published: DINOv2* (Table r2, best epoch on test) | 5.5 | n/a |" in text
    assert LinearProbe.load(record["probe_path"]).linear.in_features == 64


def test_cli_probe_epoch_selection(synthetic_soco, tmp_path):
    """`--probe-epoch-selection best-on-test` runs the released script's choice; the default is the last epoch."""
    from correspondence.cli import main
    for choice in ("best-on-test", None):
        out = tmp_path / str(choice)
        code = main(["bench", "soco", "--root", str(synthetic_soco), "--backbone", "test_vit_tiny", "--random-weights",
                     "--categories", "car", "--max-pairs-per-category", "2", "--task", "cc,soc", "--linear-probe",
                     "--no-progress", "--feature-cache", str(tmp_path / "cache"),
                     "--out", str(out)] + (["--probe-epoch-selection", choice] if choice else []))
        assert code == 0
        recipe = json.loads((out / "results.json").read_text())["summary"]["linear_probe"]["recipe"]
        assert recipe["epoch_selection"] == (choice or "last")
