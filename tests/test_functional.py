"""The functional head: model, text encoder, checkpoint, training on a tiny synthetic set, evaluation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from correspondence.functional.checkpoint import HeadCheckpoint
from correspondence.functional.model import FunctionalHead, HeadConfig, projection_dim


def test_projection_width_follows_the_paper():
    assert projection_dim(768) == 512 and projection_dim(384) == 256 and projection_dim(1024) == 680


def test_head_shapes_and_normalisation():
    torch.manual_seed(0)
    head = FunctionalHead(HeadConfig(feature_dim=32, text_dim=8, hidden=64, output=16))
    blocks = [torch.randn(2, 32, 5, 6) for _ in range(3)]
    fused = head.fuse(blocks)
    assert fused.shape == (2, head.config.projection, 5, 6)
    assert torch.allclose(fused.norm(dim=1), torch.ones(2, 5, 6), atol=1e-5)
    emb, logits = head.embed(fused, torch.rand(2, 7, 2) * 2 - 1, torch.randn(2, 8))
    assert emb.shape == (2, 7, 16) and logits.shape == (2, 7)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2, 7), atol=1e-5)
    dense, mask = head.dense(fused, torch.randn(2, 8), chunk=7)
    assert dense.shape == (2, 16, 5, 6) and mask.shape == (2, 5, 6)
    # the dense path equals sampling every cell centre
    ys, xs = torch.meshgrid(torch.arange(5), torch.arange(6), indexing="ij")
    grid = torch.stack([2 * xs / 5 - 1, 2 * ys / 4 - 1], -1).reshape(1, -1, 2).float()
    text = torch.randn(1, 8)
    direct, _ = head.embed(fused[:1], grid, text)
    dense_one, _ = head.dense(fused[:1], text)
    assert torch.allclose(direct[0].T.reshape(16, 5, 6), dense_one[0], atol=1e-5)


def test_checkpoint_round_trip_needs_no_text_encoder_for_known_functions(tmp_path, monkeypatch):
    torch.manual_seed(1)
    head = FunctionalHead(HeadConfig(feature_dim=32, text_dim=8, hidden=64, output=16))
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
    a, _ = head.dense(fused, vector[None])
    b, _ = loaded.head.dense(fused, vector[None])
    assert torch.allclose(a, b)
    (tmp_path / "head.json").write_text("{}")
    with pytest.raises(Exception, match="format"):
        HeadCheckpoint.load(path)


def test_minilm_text_encoder_works_offline():
    from correspondence.functional.text import embed_functions, get_text_encoder
    encoder = get_text_encoder("all-MiniLM-L6-v2")
    table = embed_functions(["pour-with", "pour with", "pound-with", "cut-with"], encoder)
    assert table["pour-with"].shape == (384,)
    assert torch.allclose(table["pour-with"], table["pour with"], atol=1e-5)  # same prompt
    assert float(table["pour-with"] @ table["pound-with"]) < 0.95
    assert torch.allclose(table["cut-with"].norm(), torch.tensor(1.0), atol=1e-4)


@pytest.fixture(scope="module")
def tiny_functional(tmp_path_factory):
    from correspondence.world.synth import SynthConfig, synth_functional
    root = tmp_path_factory.mktemp("functional")
    common = dict(categories=("mug", "jug", "cup"), size=96, instances=2, progress=False)
    synth_functional(SynthConfig(out=str(root / "train"), views=5, seed=1, train_fraction=1.0, **common))
    synth_functional(SynthConfig(out=str(root / "heldout"), views=3, seed=2, train_fraction=1.0, **common))
    return root


def test_training_lowers_the_loss_and_beats_the_untrained_head(tiny_functional, tmp_path):
    from correspondence.backbones import create_backbone
    from correspondence.benchmarks.functional import synthetic_pairs
    from correspondence.functional.evaluate import evaluate_pair
    from correspondence.functional.inference import FunctionalEmbedder
    from correspondence.functional.metrics import aggregate
    from correspondence.functional.train import LAYERS, TrainConfig, train_head
    backbone = create_backbone("test_vit_tiny")
    config = TrainConfig(data=str(tiny_functional / "train"), out=str(tmp_path / "head"), epochs=5, batch_pairs=6,
                         points=48, lr=2e-3, image_size=112, hidden=128, output=64, progress=False)
    result = train_head(config, backbone)
    history = result["history"]
    assert history[-1]["total"] < history[0]["total"]
    assert (tmp_path / "head.safetensors").is_file() and (tmp_path / "head.loss.png").is_file()
    trained = HeadCheckpoint.load(result["checkpoint"])
    torch.manual_seed(123)
    untrained = HeadCheckpoint(FunctionalHead(trained.head.config).eval(), backbone.spec.name, LAYERS,
                               trained.text_encoder, trained.functions)
    pairs = [p for p in synthetic_pairs(tiny_functional / "heldout", "train") if p.function in trained.functions]
    assert len(pairs) >= 3

    def score(checkpoint):
        embed = FunctionalEmbedder.create(checkpoint, backbone, image_size=112, stride=4)
        records = [r for p in pairs for r in evaluate_pair(p, embed, discovery=False)]
        return aggregate(records)["all"]["pck@23"]
    assert score(trained) > score(untrained)


def test_training_resumes_from_its_state(tiny_functional, tmp_path):
    from correspondence.backbones import create_backbone
    from correspondence.functional.train import TrainConfig, train_head
    backbone = create_backbone("test_vit_tiny")
    config = TrainConfig(data=str(tiny_functional / "train"), out=str(tmp_path / "head"), epochs=1, batch_pairs=8,
                         points=16, image_size=112, hidden=64, output=32, progress=False)
    first = train_head(config, backbone)
    second = train_head(TrainConfig(**{**config.__dict__, "epochs": 2}), backbone)
    assert [h["epoch"] for h in second["history"]] == [1, 2]
    assert second["history"][0] == first["history"][0]  # epoch 1 was not redone


def test_crop_square_moves_points_with_the_image():
    from correspondence.functional.evaluate import crop_square
    image = np.zeros((120, 200, 3), np.uint8)
    mask = np.zeros((120, 200), bool)
    mask[40:80, 100:150] = True
    image[60, 120] = (255, 0, 0)
    crop, crop_mask, transform = crop_square(image, mask)
    assert crop.shape == (224, 224, 3) and crop_mask.any()
    x, y = transform.apply(np.array([[120.5, 60.5]]))[0]
    assert crop[int(y), int(x), 0] > 100  # the marked pixel lands where the transform says


def test_bench_handal_end_to_end_on_a_synthetic_handal_set(tmp_path):
    import json

    from correspondence.cli import main
    data = tmp_path / "handal"
    assert main(["synth", "handal", "--out", str(data), "--categories", "mug,jug", "--views", "2", "--instances", "2",
                 "--size", "96", "--no-progress"]) == 0
    out = tmp_path / "bench"
    assert main(["bench", "handal", "--root", str(data), "--backbone", "daisy", "--max-pairs", "3",
                 "--out", str(out)]) == 0
    results = json.loads((out / "functional_results.json").read_text())
    (method,) = results["methods"].values()
    assert results["pairs"] == 3 and len(method["records"]) == 6  # both directions
    for record in method["records"]:
        assert 0.0 <= record["normalised_distance"] <= 1.5
        assert all(0.0 <= record[k] <= 100.0 for k in ("pck@23", "pck@10", "best_f1@23", "ap@10"))
    assert (out / "functional_results.md").read_text().startswith("| method |")
    assert (out / "pr_curves.png").is_file()


def test_label_transfer_with_oracle_embeddings_is_exact():
    """Embeddings that encode the true correspondence give PCK 100 and zero distance."""
    from correspondence.coords import Convention
    from correspondence.features import FeatureMap
    from correspondence.functional.evaluate import AnnotatedPair, evaluate_pair
    from correspondence.preprocessing import PreprocessSettings, preprocess
    size, stride = 224, 4
    image = np.zeros((size, size, 3), np.uint8)
    mask = np.ones((size, size), bool)
    rng = np.random.default_rng(0)
    cells = rng.choice(50 * 50, 20, replace=False)  # away from the far border, so the shifted points stay inside
    xy = np.stack([(cells % 50) * stride + 2.0, (cells // 50) * stride + 2.0], 1)
    shift = np.array([8.0, 4.0])  # the target is the source moved by (2, 1) cells

    def oracle(which: str):
        def embed(img, function):
            _, geometry = preprocess(img, PreprocessSettings(pad="center-pad", size=size), stride)
            grid = torch.full((64, 56, 56), 0.01)
            points = xy if which == "a" else xy + shift
            for i, (x, y) in enumerate(points):
                grid[:, int(y // stride), int(x // stride)] = 0
                grid[i, int(y // stride), int(x // stride)] = 1.0
            return FeatureMap(grid, geometry, stride, Convention.PATCH_CENTER), None
        return embed

    pair = AnnotatedPair("p", "pour-with", "mug", "mug", image, mask, image.copy(), mask, xy, xy + shift)
    calls = iter([oracle("a"), oracle("b")])
    records = evaluate_pair(pair, lambda img, f: next(calls)(img, f), discovery=False)[:1]
    assert records[0]["normalised_distance"] == 0.0 and records[0]["pck@10"] == 100.0
