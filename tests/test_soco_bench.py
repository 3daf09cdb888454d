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
from correspondence.errors import InputError
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
    result = evaluate_backbone(list(SocoPairs(tmp_path)), oracle({**IDENTITY, "door": 4}.get))
    assert result["questions"] == 3 and result["circular_accuracy"] == 100.0


def test_linear_probe_starts_as_identity_learns_and_reloads(synthetic_soco, tmp_path):
    from correspondence.backbones import create_backbone
    from correspondence.benchmarks.soco.features_store import FeatureStore
    from correspondence.benchmarks.soco.probe import LinearProbe, ProbeConfig, train_probe
    from correspondence.features import FeatureExtractor
    settings = ProtocolSettings(size=112, tasks=("cc", "soc"))
    store = FeatureStore(FeatureExtractor(create_backbone("test_vit_tiny"), settings.extraction(), cache_size=0))
    grid = torch.randn(64, 4, 4)
    assert torch.allclose(LinearProbe(64)(grid), torch.nn.functional.normalize(grid, dim=0), atol=1e-6)
    probe, losses = train_probe(list(SocoPairs(synthetic_soco, "train")), store, ProbeConfig(epochs=4), progress=False)
    assert losses[-1] < losses[0]
    path = probe.save(tmp_path / "probe.safetensors", {"note": "test"})
    again = LinearProbe.load(path)
    assert torch.allclose(probe(grid), again(grid)) and not torch.allclose(probe(grid), LinearProbe(64)(grid))


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


def test_feature_store_gives_the_same_maps_from_memory_disk_and_prefetch(synthetic_soco, tmp_path):
    from correspondence.backbones import create_backbone
    from correspondence.benchmarks.soco.features_store import FeatureStore
    from correspondence.features import FeatureExtractor
    settings = ProtocolSettings(size=112)
    extractor = FeatureExtractor(create_backbone("test_vit_tiny"), settings.extraction(), cache_size=0)
    pairs = list(SocoPairs(synthetic_soco, "intra"))[:3]
    views = [v for p in pairs for v in (p.source, p.target)]
    first = FeatureStore(extractor, tmp_path / "cache")
    maps = [first(v) for v in views]
    assert first.stats.encoded == len({str(v.image_path) for v in views})
    assert first.stats.hits == len(views) - first.stats.encoded
    again = FeatureStore(extractor, tmp_path / "cache")
    from_disk = [again(v) for v in views]
    assert again.stats.encoded == 0 and again.stats.disk_hits == first.stats.encoded
    prefetched = FeatureStore(extractor)
    prefetched.encode_distributed(views, progress=False)  # one process: a plain prefetch
    from_prefetch = [prefetched(v) for v in views]
    assert prefetched.stats.hits == first.stats.hits  # the first use of a prefetched map is not a cache hit
    for a, b, c in zip(maps, from_disk, from_prefetch):
        assert a.features.dtype == b.features.dtype == c.features.dtype == torch.float16
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
