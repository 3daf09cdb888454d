"""The functional head: model, text encoders, checkpoint, training on a tiny synthetic set, the reference layout
and the benchmark command (the reference's conventions are pinned in test_functional_reference.py)."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from correspondence.errors import CorruptCheckpointError, InputError, WeightsNotFoundError
from correspondence.functional.checkpoint import HeadCheckpoint
from correspondence.functional.model import FunctionalHead, HeadConfig


def _tiny_head(seed: int = 0, text_dim: int = 8) -> FunctionalHead:
    torch.manual_seed(seed)
    return FunctionalHead(HeadConfig(feature_dim=32, text_dim=text_dim, hidden=64, output=16, projection=24))


def test_head_layout_shapes_and_normalisation():
    head = _tiny_head()
    assert head.config.projection == 24 and HeadConfig(768, 512).projection == 512  # the reference: always 512
    assert set(head.state_dict()) == {"image_embedder.lin_proj.weight", "image_embedder.w",
                                      "mlp_conditioner.mlp.0.weight", "mlp_conditioner.mlp.0.bias",
                                      "mlp_conditioner.mlp.2.weight", "mlp_conditioner.mlp.2.bias",
                                      "mlp_conditioner.mlp.4.weight", "mask_projection.weight",
                                      "mask_projection.bias"}
    assert (head.image_embedder.w > 0).all() and (head.image_embedder.w < 1).all()  # torch.rand init
    blocks = [torch.randn(2, 32, 5, 5) for _ in range(3)]
    fused = head.fuse(blocks)
    assert fused.shape == (2, 24, 5, 5) and torch.allclose(fused.norm(dim=1), torch.ones(2, 5, 5), atol=1e-5)
    text = torch.randn(2, 8)
    emb, logits = head.embed_pixels(fused, torch.randint(0, 70, (2, 7, 2)), text, 70)
    assert emb.shape == (2, 7, 16) and logits.shape == (2, 7)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2, 7), atol=1e-5)
    one_pass, one_logits = head.dense_pixels(fused, text, 20)
    chunked, chunked_logits = head.dense_pixels(fused, text, 20, chunk=7)
    assert one_pass.shape == (2, 400, 16) and torch.allclose(one_pass, chunked, atol=1e-6)
    assert torch.allclose(one_logits, chunked_logits, atol=1e-6)
    # the projection views used by the ONNX wrapper equal the fused path
    weights = torch.softmax(head.block_logits, 0)
    manual = torch.nn.functional.normalize(sum(w * p(b) for w, p, b in zip(weights, head.projections, blocks)), dim=1)
    assert torch.allclose(manual, fused, atol=1e-5)


def test_checkpoint_round_trip_needs_no_text_encoder_for_known_functions(tmp_path, monkeypatch):
    head = _tiny_head(1)
    table = {"pour-with": torch.nn.functional.normalize(torch.randn(8), dim=0)}
    path = HeadCheckpoint(head, "test_vit_tiny", (-3, -2, -1), "all-MiniLM-L6-v2", table).save(tmp_path / "head")
    loaded = HeadCheckpoint.load(path)
    import correspondence.functional.text as text_module

    def refuse(*args, **kwargs):
        raise AssertionError("the text encoder must not be needed for a function in the table")
    monkeypatch.setattr(text_module, "get_text_encoder", refuse)
    vector = loaded.function_embedding("pour-with")
    fused = head.fuse([torch.randn(1, 32, 4, 4) for _ in range(3)])
    assert torch.equal(vector, table["pour-with"])
    assert torch.allclose(head.dense_pixels(fused, vector[None], 8)[0], loaded.head.dense_pixels(fused, vector[None],
                                                                                                 8)[0])
    meta = json.loads((tmp_path / "head.json").read_text())
    meta["format"] = "soco_ros.functional_head/1"
    (tmp_path / "head.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptCheckpointError, match="retrain"):
        HeadCheckpoint.load(path)


def test_a_released_checkpoint_converts_to_a_head_checkpoint(tmp_path):
    torch.manual_seed(2)
    head = FunctionalHead(HeadConfig(feature_dim=32, text_dim=8, hidden=64, output=16, projection=24))
    state = {f"image_embedder.dino_vit.blocks.0.{k}": torch.randn(3) for k in ("a", "b")}
    state.update(head.state_dict())
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": []}}, tmp_path / "epoch_0090.pt")
    table = {"cut-with": torch.nn.functional.normalize(torch.randn(8), dim=0)}
    converted = HeadCheckpoint.from_reference(tmp_path / "epoch_0090.pt", "test_vit_tiny", 32, table)
    assert converted.head.config == head.config and converted.layers == (-3, -2, -1)
    assert all(torch.equal(a, b) for a, b in zip(converted.head.state_dict().values(), head.state_dict().values()))


def test_minilm_text_encoder_works_offline():
    from correspondence.functional.text import embed_functions, get_text_encoder
    encoder = get_text_encoder("all-MiniLM-L6-v2")
    table = embed_functions(["pour-with", "pour with", "pound-with", "cut-with"], encoder)
    assert table["pour-with"].shape == (384,)
    assert torch.allclose(table["pour-with"], table["pour with"], atol=1e-5)  # same prompt
    assert float(table["pour-with"] @ table["pound-with"]) < 0.95
    assert torch.allclose(table["cut-with"].norm(), torch.tensor(1.0), atol=1e-4)


TINY_CLIP = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32,
                                             "patch_size": 16},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def test_clip_text_encoder_on_a_tiny_random_open_clip_tower(tmp_path):
    open_clip = pytest.importorskip("open_clip")
    from safetensors.torch import save_file

    from correspondence.functional.text import ClipTextEncoder, embed_functions, function_prompt
    config = tmp_path / "soco-test-tiny-clip.json"
    config.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    model = open_clip.create_model("soco-test-tiny-clip").eval()
    weights = tmp_path / "tiny_clip.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    encoder = ClipTextEncoder(model="soco-test-tiny-clip", weights=str(weights), quick_gelu=False)
    assert encoder.dim == 16
    table = embed_functions(["pour-with", "cut_with"], encoder)
    tokens = open_clip.get_tokenizer("soco-test-tiny-clip")(["pour with", "cut with"])
    with torch.no_grad():
        want = torch.nn.functional.normalize(model.encode_text(tokens).float(), dim=-1)
    assert function_prompt("cut_with") == "cut with"
    assert torch.allclose(table["pour-with"], want[0], atol=1e-6) and torch.allclose(table["cut_with"], want[1],
                                                                                     atol=1e-6)
    assert encoder.precision == "fp32"  # the CPU: clip.load's model.float()
    # on a GPU the reference's clip.load computes in fp16 and normalises in fp16 (gen_clip_features.py): the
    # vectors it saved are fp16 values; precision="fp16" reproduces that (forced here on the CPU)
    half = ClipTextEncoder(model="soco-test-tiny-clip", weights=str(weights), quick_gelu=False, precision="fp16")
    vectors = half.encode(["pour with"])
    assert vectors.dtype == torch.float32 and torch.equal(vectors, vectors.half().float())
    assert torch.allclose(vectors[0], want[0], atol=5e-3) and not torch.equal(vectors[0], want[0])


def test_clip_weights_missing_offline_name_the_file_and_auto_falls_back(tmp_path, monkeypatch):
    pytest.importorskip("open_clip")
    from correspondence.functional import text
    monkeypatch.setenv("SOCO_OFFLINE", "1")
    monkeypatch.setenv("SOCO_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("SOCO_CLIP_WEIGHTS", raising=False)
    with pytest.raises(WeightsNotFoundError, match=text.CLIP_SOURCE.filename) as info:
        text.ClipTextEncoder()
    assert info.value.exit_code == 2
    # the CLIP setting is named, never the backbone's --weights (in `soco train functional` that is the backbone's)
    assert "set $SOCO_CLIP_WEIGHTS=PATH" in str(info.value) and "--weights" not in str(info.value)
    with pytest.warns(RuntimeWarning, match="all-MiniLM-L6-v2") as warned:
        encoder = text.get_text_encoder.__wrapped__("auto")
    assert encoder.name == "all-MiniLM-L6-v2"
    message = str(warned[0].message)
    assert "$SOCO_CLIP_WEIGHTS" in message and "--weights" not in message
    monkeypatch.setenv("SOCO_CLIP_WEIGHTS", str(tmp_path / "missing.safetensors"))
    with pytest.raises(WeightsNotFoundError, match=r"missing.safetensors.*given by \$SOCO_CLIP_WEIGHTS"):
        text.ClipTextEncoder()
    # a backbone's weights still point at --weights
    from correspondence.backbones.registry import get_spec
    from correspondence.backbones.weights import resolve_weights
    with pytest.raises(WeightsNotFoundError, match="pass --weights PATH"):
        resolve_weights(get_spec("dinov2_vits14").source)


@pytest.fixture(scope="module")
def tiny_functional(tmp_path_factory):
    from correspondence.world.synth import SynthConfig, synth_functional
    root = tmp_path_factory.mktemp("functional")
    common = dict(categories=("mug", "jug", "cup"), size=96, instances=2, progress=False)
    synth_functional(SynthConfig(out=str(root / "train"), views=5, seed=1, train_fraction=1.0, **common))
    synth_functional(SynthConfig(out=str(root / "heldout"), views=3, seed=2, train_fraction=1.0, **common))
    return root


def _config(data, out, **kw):
    from correspondence.functional.train import TrainConfig
    # augment=False: a random tiny backbone cannot see past random backgrounds in a few steps (the reference's
    # default, kept by TrainConfig, replaces every background)
    base = dict(data=str(data), out=str(out), epochs=4, batches_per_epoch=6, batch_pairs=6, points=24, lr=3e-3,
                image_size=56, hidden=96, output=48, projection=48, text_encoder="all-MiniLM-L6-v2", progress=False,
                augment=False)
    base.update(kw)
    return TrainConfig(**base)


def test_training_data_follows_the_reference_sampling(tiny_functional):
    from correspondence.functional.data import (TrainingSet, list_pairs, load_pairs, part_and_rest_points,
                                                replace_background, spatial_points)
    data = TrainingSet.build(load_pairs(list_pairs(tiny_functional / "train", "train")), 56)
    assert data.by_function and data.spatial
    batch = data.functional_batch(random.Random(10), 5)
    assert len(batch) == 5 and all(a.function == b.function and a is not b for a, b in batch)
    rng = np.random.default_rng(0)
    image = batch[0][0]
    pos, neg = part_and_rest_points(image, 40, rng)
    assert pos.shape == neg.shape == (40, 2) and pos.dtype == np.int64
    assert image.part[pos[:, 1], pos[:, 0]].all() and (image.mask & ~image.part)[neg[:, 1], neg[:, 0]].all()
    pair = data.spatial[0]
    c1, c2 = spatial_points(pair, 30, rng)
    assert pair.a.part[c1[:, 1], c1[:, 0]].all() and pair.b.part[c2[:, 1], c2[:, 0]].all()
    out = replace_background(image, rng)
    assert (out[image.mask] == image.rgb[image.mask]).all() and out.dtype == np.uint8


def test_training_lowers_the_loss_and_beats_the_untrained_head(tiny_functional, tmp_path):
    from correspondence.backbones import create_backbone
    from correspondence.benchmarks.functional import synthetic_pairs
    from correspondence.functional.evaluate import evaluate_pair
    from correspondence.functional.inference import FunctionalEmbedder
    from correspondence.functional.metrics import aggregate
    from correspondence.functional.train import LAYERS, train_head
    backbone = create_backbone("test_vit_tiny")
    result = train_head(_config(tiny_functional / "train", tmp_path / "head"), backbone)
    history = result["history"]
    assert min(h["total"] for h in history[1:]) < history[0]["total"]
    assert all(h["steps"] == 6 and h["pairs"] == 6 * 6 for h in history)
    assert (tmp_path / "head.safetensors").is_file() and (tmp_path / "head.loss.png").is_file()
    trained = HeadCheckpoint.load(result["checkpoint"])
    assert trained.text_encoder == "all-MiniLM-L6-v2" and trained.head.mask_projection is not None
    torch.manual_seed(123)
    untrained = HeadCheckpoint(FunctionalHead(trained.head.config).eval(), backbone.spec.name, LAYERS,
                               trained.text_encoder, trained.functions)
    pairs = [p for p in synthetic_pairs(tiny_functional / "heldout", "train", size=56)
             if p.function in trained.functions]
    assert len(pairs) >= 3

    def score(checkpoint):
        embed = FunctionalEmbedder.create(checkpoint, backbone, image_size=56)
        records = [r for p in pairs for r in evaluate_pair(p, embed, discovery=False)]
        return aggregate(records)["all"]["normalised_distance"]
    assert score(trained) < score(untrained)


def test_training_resumes_and_the_ablations_run(tiny_functional, tmp_path):
    from correspondence.backbones import create_backbone
    from correspondence.functional.train import train_head
    backbone = create_backbone("test_vit_tiny")
    config = _config(tiny_functional / "train", tmp_path / "head", epochs=1, batches_per_epoch=2, batch_pairs=2,
                     points=8, hidden=32, output=16, projection=16)
    first = train_head(config, backbone)
    second = train_head(_config(**{**config.__dict__, "epochs": 2}), backbone)
    assert [h["epoch"] for h in second["history"]] == [1, 2]
    assert second["history"][0] == first["history"][0]  # epoch 1 was not redone
    spatial_only = train_head(_config(**{**config.__dict__, "out": str(tmp_path / "s"), "functional": False}),
                              backbone)
    assert spatial_only["history"][0]["functional"] == 0.0 and spatial_only["history"][0]["spatial"] > 0
    no_mask = train_head(_config(**{**config.__dict__, "out": str(tmp_path / "m"), "spatial": False,
                                    "mask_head": False}), backbone)
    assert no_mask["history"][0]["mask"] == 0.0 and no_mask["history"][0]["spatial"] == 0.0
    assert HeadCheckpoint.load(no_mask["checkpoint"]).head.mask_projection is None


def test_stride_map_for_live_frames():
    from correspondence.backbones import create_backbone
    from correspondence.functional.inference import FunctionalEmbedder
    backbone = create_backbone("test_vit_tiny")
    head = FunctionalHead(HeadConfig(feature_dim=64, text_dim=8, hidden=32, output=16, projection=16)).eval()
    checkpoint = HeadCheckpoint(head, "test_vit_tiny", (-3, -2, -1), "all-MiniLM-L6-v2", {"f": torch.ones(8) / 8 ** .5})
    embedder = FunctionalEmbedder.create(checkpoint, backbone, image_size=56, stride=4)
    image = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    fmap, mask = embedder(image, "f")
    assert fmap.grid_wh == (14, 14) and mask.shape == (14, 14) and ((mask >= 0) & (mask <= 1)).all()
    pixels = embedder.pixels(np.zeros((56, 56, 3), np.uint8), "f")
    assert pixels.emb.shape == (56 * 56, 16) and pixels.part.shape == (56, 56) and pixels.part.dtype == bool


@pytest.fixture(scope="module")
def tiny_handal(tmp_path_factory):
    from correspondence.cli import main
    data = tmp_path_factory.mktemp("handal")
    assert main(["synth", "handal", "--out", str(data), "--categories", "mug,jug", "--views", "2", "--instances", "2",
                 "--size", "96", "--no-progress"]) == 0
    return data


def test_synth_handal_writes_the_reference_layout_and_it_reads_back(tiny_handal, tmp_path):
    from correspondence.benchmarks.functional import _bop_pairs, handal_pairs
    from correspondence.world.writers.handal import find_reference_layout, read_reference_layout
    layout = find_reference_layout(tiny_handal)
    assert layout is not None and layout.annotation_list.name == "selected_annotations.json"
    listed = json.loads(layout.annotation_list.read_text())
    trials = read_reference_layout(layout)
    assert len(trials) == sum(len(t) for pairs in listed.values() for t in pairs.values()) > 0
    for trial in trials:
        assert trial.image_a.shape == (224, 224, 3) and trial.mask_a.shape == (224, 224)
        assert trial.rc_a.dtype == np.int64 and (trial.rc_a >= 0).all() and (trial.rc_a <= 223).all()
        assert "|||0000/trial_" in trial.pair_id and trial.category_a in ("mug", "jug")
        names = sorted(p.name for p in (layout.annotation_dir / trial.pair_id).iterdir())
        assert names == sorted([f"{trial.obj_a}|||{trial.image_name_a}.npy",
                                f"{trial.obj_b}|||{trial.image_name_b}.npy"])
    # the reference layout and the BOP scenes give the same evaluation pairs (same crops, same points)
    from_reference = handal_pairs(tiny_handal)
    from_bop = _bop_pairs(tiny_handal)
    assert len(from_reference) == len(from_bop)
    key = lambda p: (p.function, p.rc_a.tobytes(), p.rc_b.tobytes())  # noqa: E731
    ref_by_key = {key(p): p for p in from_reference}
    for p in from_bop:
        twin = ref_by_key.get(key(p)) or ref_by_key.get((p.function, p.rc_b.tobytes(), p.rc_a.tobytes()))
        assert twin is not None
        images = {twin.image_a.tobytes(), twin.image_b.tobytes()}
        assert p.image_a.tobytes() in images and p.image_b.tobytes() in images


def test_convert_between_the_layouts(tiny_handal, tmp_path):
    from correspondence.cli import main
    from correspondence.world.writers.handal import (check_handal_dataset, find_reference_layout,
                                                     read_functional_pairs, read_reference_layout)
    assert main(["convert", "handal-functional", "--root", str(tiny_handal), "--out", str(tmp_path / "ref")]) == 0
    again = read_reference_layout(find_reference_layout(tmp_path / "ref"))
    original = read_reference_layout(find_reference_layout(tiny_handal))
    assert [t.pair_id for t in again] == [t.pair_id for t in original]
    assert all(np.array_equal(a.rc_a, b.rc_a) and np.array_equal(a.image_b, b.image_b)
               for a, b in zip(again, original))
    assert main(["convert", "handal-functional", "--root", str(tmp_path / "ref"), "--to", "bop",
                 "--out", str(tmp_path / "bop")]) == 0
    assert check_handal_dataset(tmp_path / "bop") == []
    pairs = read_functional_pairs(tmp_path / "bop")
    assert len(pairs) == len(original)
    both = lambda a, b: tuple(sorted((a.tobytes(), b.tobytes())))  # noqa: E731 -- the writer may swap sides
    assert sorted(both(p.rc_a, p.rc_b) for p in pairs) == sorted(both(t.rc_a, t.rc_b) for t in original)


def test_bench_handal_reference_protocol_with_published_rows(tiny_handal, tmp_path):
    from correspondence.cli import main
    table = tmp_path / "functional_table1.tsv"
    table.write_text("split\tmodel\tnormalized_dist\tPCK@23px\tPCK@10px\tbestF1@23px\tbestF1@10px\tAP@23px\tAP@10px\n"
                     "real\tChance\t0.313\t0.170\t0.045\t0.417\t0.167\t0.248\t0.087\n"
                     "synthetic\tChance\t0.310\t0.165\t0.046\t0.416\t0.176\t0.256\t0.093\n")
    out = tmp_path / "bench"
    assert main(["bench", "handal", "--root", str(tiny_handal), "--backbone", "test_vit_tiny", "--random-weights",
                 "--no-dino", "--max-pairs", "2", "--paper-table", str(table), "--no-progress",
                 "--out", str(out)]) == 0
    results = json.loads((out / "functional_results.json").read_text())
    assert results["settings"]["protocol"] == "reference" and results["pairs"] == 2
    (method,) = results["methods"].values()
    assert len(method["records"]) == 4  # both directions
    for record in method["records"]:
        assert 0.0 <= record["normalised_distance"] <= 1.5
        assert all(0.0 <= record[k] <= 1.0 for k in ("pck@23", "pck@10", "best_f1@23", "ap@10", "ap@5"))
    assert results["published"]["split"] == "real" and len(results["published"]["rows"]) == 1
    md = (out / "functional_results.md").read_text()
    assert "| Chance | all |" in md and "published: Stojanov et al. ICCV 2025, Table 1" in md and "0.313" in md
    assert (out / "pr_curves.png").is_file()


def test_bench_handal_chance_only_never_loads_the_backbone(tiny_handal, tmp_path, monkeypatch):
    """--no-dino without --head computes only the Chance row: offline, with no DINOv2 weights anywhere (the
    fixtures' empty hub cache, SOCO_OFFLINE=1), it runs instead of exiting 2 on the weights it does not need."""
    from correspondence import backbones
    from correspondence.cli import main
    out = tmp_path / "chance"
    assert main(["bench", "handal", "--root", str(tiny_handal), "--backbone", "dinov2_vitb14", "--no-dino",
                 "--max-pairs", "1", "--no-progress", "--out", str(out)]) == 0
    results = json.loads((out / "functional_results.json").read_text())
    assert list(results["methods"]) == ["Chance"] and "not loaded" in results["settings"]["backbone"]
    # the DINO row does need the weights: the same command without --no-dino exits 2 naming them
    assert main(["bench", "handal", "--root", str(tiny_handal), "--backbone", "dinov2_vitb14", "--max-pairs", "1",
                 "--no-progress", "--out", str(tmp_path / "dino")]) == 2
    monkeypatch.setattr(backbones, "create_backbone", lambda *a, **k: pytest.fail("backbone created"))
    assert main(["bench", "handal", "--root", str(tiny_handal), "--no-dino", "--max-pairs", "1", "--no-progress",
                 "--out", str(out)]) == 0
    assert main(["bench", "handal", "--root", str(tiny_handal), "--no-dino", "--no-chance", "--no-progress",
                 "--out", str(out)]) == 1


@pytest.mark.slow
def test_bench_handal_dino_and_head_rows_end_to_end(tiny_handal, tmp_path):
    from correspondence.cli import main
    head = FunctionalHead(HeadConfig(feature_dim=64, text_dim=8, hidden=32, output=16, projection=16)).eval()
    functions = {f: torch.nn.functional.normalize(torch.randn(8), dim=0) for f in ("pour-with", "contain-with",
                                                                                  "grasp-with", "scoop-with")}
    path = HeadCheckpoint(head, "test_vit_tiny", (-3, -2, -1), "all-MiniLM-L6-v2", functions).save(tmp_path / "h")
    out = tmp_path / "bench"
    from correspondence.benchmarks.functional import handal_pairs
    function = handal_pairs(tiny_handal)[0].function
    if function not in functions:
        functions[function] = torch.nn.functional.normalize(torch.randn(8), dim=0)
        HeadCheckpoint(head, "test_vit_tiny", (-3, -2, -1), "all-MiniLM-L6-v2", functions).save(tmp_path / "h")
    assert main(["bench", "handal", "--root", str(tiny_handal), "--backbone", "test_vit_tiny", "--random-weights",
                 "--head", str(path), "--max-pairs", "1", "--no-progress", "--out", str(out)]) == 0
    results = json.loads((out / "functional_results.json").read_text())
    assert len(results["methods"]) == 3
    for data in results["methods"].values():
        assert all(np.isfinite(v) for v in data["aggregate"]["all"].values())


def test_the_schema_check_reads_the_reference_layout(tiny_handal, tmp_path):
    import shutil

    from correspondence.world.writers.handal import check_handal_dataset
    copy = tmp_path / "copy"
    shutil.copytree(tiny_handal / "reference", copy)
    assert check_handal_dataset(copy) == []
    victim = next((copy / "annotations").rglob("*.npy"))
    np.save(victim, np.zeros((1, 2), np.int64))  # now fewer rows than its partner
    assert any("reference layout" in p and "points" in p for p in check_handal_dataset(copy))


def test_convert_a_released_head_with_its_clip_features(tmp_path):
    from correspondence.cli import main
    torch.manual_seed(4)
    head = FunctionalHead(HeadConfig(feature_dim=64, text_dim=8, hidden=32, output=16, projection=16))
    state = {"image_embedder.dino_vit.pos_embed": torch.zeros(1, 5, 64), **head.state_dict()}
    torch.save({"model": state}, tmp_path / "epoch_0100.pt")
    (tmp_path / "clip").mkdir()
    for name in ("pour-with", "cut-with"):
        torch.save(torch.nn.functional.normalize(torch.randn(8), dim=0).half(), tmp_path / "clip" / f"{name}.pth")
    assert main(["convert", "reference-head", "--checkpoint", str(tmp_path / "epoch_0100.pt"), "--clip-features",
                 str(tmp_path / "clip"), "--backbone", "test_vit_tiny", "--out", str(tmp_path / "head")]) == 0
    loaded = HeadCheckpoint.load(tmp_path / "head.safetensors")
    assert sorted(loaded.functions) == ["cut-with", "pour-with"] and loaded.backbone == "test_vit_tiny"
    assert torch.equal(loaded.head.state_dict()["mlp_conditioner.mlp.4.weight"], state["mlp_conditioner.mlp.4.weight"])


def test_every_trial_written_in_the_reference_layout_runs_in_the_released_scripts(tmp_path, monkeypatch):
    """inference_2D_HANDAL.py:232-233 draws ``random.sample(range(len(co1)), 10)`` for every trial and stops the
    whole run below 10 points: `soco synth handal` (and the converter) must not write such a trial, and the
    checker finds one written by hand."""
    from correspondence.world import synth
    from correspondence.world.writers.handal import (REFERENCE_MIN_POINTS, check_handal_dataset,
                                                     convert_bop_to_reference, find_reference_layout,
                                                     read_functional_pairs, read_reference_layout,
                                                     reference_layout_problems, write_reference_trial)
    real = synth.functional_correspondences
    calls = []

    def some_short(*args, **kwargs):  # every other pair keeps 7 points, as small visible parts give
        corr = real(*args, **kwargs)
        calls.append(len(corr))
        return corr if len(calls) % 2 else type(corr)(corr.xy_a[:7], corr.xy_b[:7], corr.points_a[:7])

    monkeypatch.setattr(synth, "functional_correspondences", some_short)
    out = tmp_path / "handal"
    summary = synth.synth_handal(synth.SynthConfig(out=str(out), categories=("mug", "jug"), views=2, instances=2,
                                                   size=96, progress=False))
    assert len(calls) > summary["functional_pairs"] > 0  # the 7-point trials were not written
    assert all(len(p.rc_a) >= REFERENCE_MIN_POINTS for p in read_functional_pairs(out))
    layout = find_reference_layout(out)
    assert summary["reference_trials"] == summary["functional_pairs"] and reference_layout_problems(layout) == []
    # reference: random.sample(range(len(co1_copy)), n_viz_points) with n_viz_points = 10
    trials = read_reference_layout(layout)
    for t in trials:
        random.sample(range(len(t.rc_a)), 10)
        random.sample(range(len(t.rc_b)), 10)
    # a hand-written BOP pair with 7 points is left out of the conversion, and said so
    pair = read_functional_pairs(out)[0]
    np.save(pair.path_a, np.load(pair.path_a)[:7])
    np.save(pair.path_b, np.load(pair.path_b)[:7])
    converted = convert_bop_to_reference(out, tmp_path / "converted")
    assert converted["trials"] == summary["functional_pairs"] - 1
    assert len(converted["skipped_fewer_than_10_points"]) == 1
    # the writer refuses 9 points; the checker finds a 9-point trial and a stray file written by hand
    t = trials[0]
    with pytest.raises(InputError, match="samples 10"):
        write_reference_trial(tmp_path / "bad", t.function, t.obj_a, t.image_name_a, t.image_a, t.mask_a, t.rc_a[:9],
                              t.obj_b, t.image_name_b, t.image_b, t.mask_b, t.rc_b[:9], 0)
    trial_dir = layout.annotation_dir / t.pair_id
    for f in trial_dir.glob("*.npy"):
        np.save(f, np.load(f)[:9])
    problems = reference_layout_problems(layout)
    assert len(problems) == 1 and "9 points" in problems[0] and "inference_2D_HANDAL.py:233" in problems[0]
    assert any("9 points" in p for p in check_handal_dataset(out))
    (trial_dir / "notes.txt").write_text("x")
    assert "os.listdir" in reference_layout_problems(layout)[0]
