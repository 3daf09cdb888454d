"""The GPU tier (marker ``gpu``; ``make gpu-check``): every path on CUDA gives what it gives on the CPU.

Skipped with the reason where CUDA is absent (CI, this project's development machine). Runs on a bare GPU machine
with torch, timm, numpy, OpenCV and scikit-image from the source tree (``PYTHONPATH=.``); parts that need open3d or
ROS skip with the reason. Backbones use seeded random weights: the comparisons are CPU vs CUDA on identical
weights and inputs, which needs no pretrained checkpoint.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="no CUDA device: torch.cuda.is_available() is False on this machine")]

SIZE = 224
BACKBONE = "dinov2_vits14"


def textured(seed: int, wh=(320, 240)) -> np.ndarray:
    """Smooth random texture (upsampled noise): distinct everywhere, like a real surface at a distance."""
    import cv2
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 255, (wh[1] // 8, wh[0] // 8, 3), dtype=np.uint8)
    return cv2.resize(noise, wh, interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def scene():
    demo = textured(0)
    live = np.roll(demo, (7, 11), axis=(0, 1)).copy()
    xs, ys = np.meshgrid(np.linspace(40, 280, 8), np.linspace(40, 200, 4))
    keypoints = {"keypoints": [{"name": f"k{i}", "xy": [float(x), float(y)]}
                               for i, (x, y) in enumerate(zip(xs.ravel(), ys.ravel()))]}
    mask = np.zeros(live.shape[:2], bool)
    mask[20:220, 30:300] = True
    return demo, live, keypoints, mask


def matcher(device: str, **options):
    from correspondence.api import Matcher
    return Matcher.create(BACKBONE, random_weights=True, size=SIZE, device=device, allow_download=False, **options)


def same_fraction(a, b, tol_px: float = 1e-3) -> float:
    return float(np.mean([np.allclose(x.live_xy, y.live_xy, atol=tol_px) for x, y in zip(a.matches, b.matches)]))


@pytest.mark.parametrize("method", ["argmax", "soft-argmax"])
@pytest.mark.parametrize("with_masks", [False, True])
def test_matcher_on_cuda_gives_the_cpu_matches(scene, method, with_masks):
    demo, live, keypoints, mask = scene
    masks = {"live_mask": mask, "demo_mask": mask} if with_masks else {}
    cpu = matcher("cpu", method=method)(demo, keypoints, live, **masks)
    gpu = matcher("cuda", method=method)(demo, keypoints, live, **masks)
    assert gpu.settings["device"].startswith("cuda")
    assert same_fraction(cpu, gpu, tol_px=1e-2) >= 31 / 32
    scores = np.array([[a.score, b.score] for a, b in zip(cpu.matches, gpu.matches)])
    assert np.abs(scores[:, 0] - scores[:, 1]).max() < 1e-3
    assert [m.mutual for m in cpu.matches] == [m.mutual for m in gpu.matches]


def test_cuda_graphs_replay_the_eager_network(scene):
    """Captured at creation, positional embedding fixed, device preprocessing: the same features to fp32 noise."""
    demo, live, keypoints, _ = scene
    eager = matcher("cuda")
    graphs = matcher("cuda", runtime={"cuda_graphs": True})
    runtime = graphs.extractor.runtime
    assert runtime.captured_shapes == [(1, 3, SIZE, SIZE)]  # captured at construction, before any frame
    assert graphs.extractor.device_preprocess and not eager.extractor.device_preprocess
    a = eager.extractor.extract_batch([live], cache=False)[0].features
    b = graphs.extractor.extract_batch([live], cache=False)[0].features
    b2 = graphs.extractor.extract_batch([live], cache=False)[0].features
    assert torch.equal(b, b2)  # a replay is deterministic and the output is a copy, not the graph's buffer
    cosine = torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=0)
    assert cosine.min() > 0.99  # host (PIL) vs device resize differ by at most one grey level per pixel
    assert same_fraction(eager(demo, keypoints, live), graphs(demo, keypoints, live), tol_px=1.0) >= 0.9
    shapes = list(runtime.captured_shapes)  # + batch 2 (demo and live encoded together), captured on first use
    for shift in range(3):
        graphs(demo, keypoints, np.roll(live, shift, axis=1))
    assert runtime.captured_shapes == shapes  # no new capture per frame


def test_fp16_autocast_and_cuda_graphs_agree_with_fp32(scene):
    demo, live, keypoints, _ = scene
    fp32 = matcher("cuda")(demo, keypoints, live)
    fp16 = matcher("cuda", dtype="float16")(demo, keypoints, live)
    fp16_graphs = matcher("cuda", dtype="float16", runtime={"cuda_graphs": True})
    query = fp16_graphs.prepare(demo, keypoints)
    fast = fp16_graphs.match_live(query, live)
    assert same_fraction(fp32, fp16, tol_px=1.0) >= 0.85
    assert same_fraction(fp32, fast, tol_px=1.0) >= 0.85
    assert all(np.isfinite(m.score) for m in fast.matches)


def test_frame_graph_equals_the_step_by_step_frame(scene):
    """One captured graph per demo and resolution computes what the separate steps compute."""
    from correspondence.keypoint_matching import match_prepared
    demo, live, keypoints, mask = scene
    fast = matcher("cuda", dtype="float16", runtime={"cuda_graphs": True})
    query = fast.prepare(demo, keypoints)
    for shift in (0, 5):
        frame = np.roll(live, shift, axis=1)
        graphed = fast.match_live(query, frame)
        assert graphed.settings["frame_graph"] is True
        fmap = fast.extractor.extract_batch([frame], cache=False)[0]
        stepwise, _ = match_prepared(query, fmap, None, fast.settings, live_image=frame)
        # The device's share (coarse cells) is the same; refinement then sees the same pixels and nearly the same
        # dense matches (fp16 kernels of two captures may differ in the last bit), so it lands within a pixel.
        same = [np.allclose(a.coarse_xy, b.coarse_xy, atol=1e-3) and a.mutual == b.mutual for a, b in
                zip(graphed.matches, stepwise)]
        assert np.mean(same) >= 31 / 32
        close = [np.hypot(*np.subtract(a.live_xy, b.live_xy)) <= 1.0 for a, b in zip(graphed.matches, stepwise)]
        assert np.mean(close) >= 0.9
    assert len(fast._frame_graphs) == 1  # replayed for the second frame, not captured again
    # a per-frame mask goes into the same graph as the cells it allows
    masked = fast.match_live(query, live, live_mask=mask)
    assert masked.settings["frame_graph"] is True and len(fast._frame_graphs) == 1
    fmap = fast.extractor.extract_batch([live], cache=False)[0]
    stepwise, _ = match_prepared(query, fmap, mask, fast.settings, live_image=live)
    same = [np.allclose(a.coarse_xy, b.coarse_xy, atol=1e-3) for a, b in zip(masked.matches, stepwise)]
    assert np.mean(same) >= 31 / 32
    inside = [mask[int(m.coarse_xy[1]), int(m.coarse_xy[0])] for m in masked.matches]
    assert np.mean(inside) >= 0.9  # coarse cells lie in the masked region (a cell may straddle its border)


def test_captured_graphs_survive_allocator_churn(scene):
    """A CUDA graph reads addresses. Whatever it reads that was made outside its capture (the frame graph's
    normalisation constants, the fixed positional embedding) must stay alive and in place: after a capture, a
    second prepare at the same size, a garbage collection and a flood of small and large allocations filled with
    garbage, both graphs still give exactly what they gave before."""
    import gc

    demo, live, keypoints, _ = scene
    fast = matcher("cuda", dtype="float16", runtime={"cuda_graphs": True})
    query = fast.prepare(demo, keypoints)
    before = fast.match_live(query, live)  # captures the frame graph
    features_before = fast.extractor.extract_batch([live], cache=False)[0].features.clone()
    fast.extractor.runtime.module.prepare((SIZE, SIZE))  # e.g. a second extractor on the same module
    gc.collect()
    flood = [torch.full((n,), 1e4, device="cuda") for n in (1, 3, 3, 64, 4096, 1 << 20) for _ in range(64)]
    after = fast.match_live(query, live)
    features_after = fast.extractor.extract_batch([live], cache=False)[0].features
    del flood
    assert torch.equal(features_before, features_after)
    assert [m.coarse_xy for m in before.matches] == [m.coarse_xy for m in after.matches]
    assert [m.score for m in before.matches] == [m.score for m in after.matches]


def test_transfer_pipeline_runs_on_cuda(scene):
    from correspondence.demo_spec import DemoSpec
    from correspondence.io import parse_keypoints
    from correspondence.pipeline import TransferPipeline
    demo, live, keypoints, mask = scene
    spec = DemoSpec(Path("demo"), demo, None, None, mask, parse_keypoints(keypoints), None, None)
    # The device's share (coarse matches): the CPU's answer, to the grey level of device preprocessing.
    cpu = TransferPipeline(spec, matcher("cpu", refine=False)).process(live, mask=mask)
    gpu = TransferPipeline(spec, matcher("cuda", refine=False, runtime={"cuda_graphs": True})).process(live, mask=mask)
    assert len(gpu.matches) == len(cpu.matches) == 32
    assert gpu.alignment_2d is not None and cpu.alignment_2d is not None
    close = [np.hypot(*np.subtract(a.live_xy, b.live_xy)) <= 14 for a, b in zip(cpu.matches, gpu.matches)]
    assert np.mean(close) >= 0.9
    refined = TransferPipeline(spec, matcher("cuda", runtime={"cuda_graphs": True})).process(live, mask=mask)
    assert len(refined.matches) == 32 and all(m.refined_xy is not None for m in refined.matches)


def write_textured_soco(root: Path, pairs: int = 6, size: tuple[int, int] | None = None) -> None:
    """A SOCO-layout set (intra pairs of textured images, shifted targets) needing no renderer; images are
    non-square and of varying sizes unless ``size`` (w, h) is given. ``make gpu-check`` times encoding on it."""
    rng = np.random.default_rng(3)
    names = ["wheel/left", "wheel/right", "roof", "door/front", "door/back"]
    (root / "Images" / "cart").mkdir(parents=True)
    (root / "PairAnnotations" / "intra" / "cart").mkdir(parents=True)
    (root / "PairAnnotations" / "cross").mkdir(parents=True)  # no cross pairs: Cross-SOC is not run here
    for p in range(pairs):
        w, h = size or (200 + 16 * (p % 8), 150 + 8 * (p % 8))
        src = textured(10 + p, (w, h))
        shift = rng.integers(-9, 10, 2)
        trg = np.roll(src, (int(shift[1]), int(shift[0])), axis=(0, 1))
        Image.fromarray(src).save(root / "Images" / "cart" / f"s{p}.png")
        Image.fromarray(trg).save(root / "Images" / "cart" / f"t{p}.png")
        xy = rng.uniform([20, 20], [w - 20, h - 20], (len(names), 2))

        def kps(points):
            return [{"id": i, "name": n, "pos": [float(x), float(y)], "concept_id": 0, "concept_name": n.split("/")[0],
                     "kind": "structural", "shared": False} for i, (n, (x, y)) in enumerate(zip(names, points))]
        pair = {"pair_id": p, "pair_group": "cart", "category": "cart", "src_category": "cart", "trg_category": "cart",
                "src_image": f"s{p}.png", "trg_image": f"t{p}.png", "src_imsize": [w, h], "trg_imsize": [w, h],
                "src_bndbox": [0, 0, w, h], "trg_bndbox": [0, 0, w, h], "src_keypoints": kps(xy),
                "trg_keypoints": kps(np.clip(xy + shift, 0, [w - 1, h - 1])), "semantic_overlap": names,
                "concept_matches": [{"concept_name": c, "src_keypoints": [n for n in names if n.startswith(c)],
                                     "trg_keypoints": [n for n in names if n.startswith(c)]}
                                    for c in ("wheel", "roof", "door")]}
        (root / "PairAnnotations" / "intra" / "cart" / f"{p:07d}.json").write_text(json.dumps(pair))


def test_soco_evaluator_gives_the_cpu_numbers_on_cuda(tmp_path):
    from correspondence.backbones import create_backbone
    from correspondence.benchmarks.soco import ProtocolSettings
    from correspondence.benchmarks.soco.run import SocoBenchConfig, run_soco_benchmark
    write_textured_soco(tmp_path / "data")
    settings = ProtocolSettings(size=SIZE, tasks=("cc", "soc", "geo"))
    results = {}
    for device in ("cpu", "cuda"):
        config = SocoBenchConfig(str(tmp_path / "data"), str(tmp_path / device), progress=False)
        run = run_soco_benchmark(config, settings, create_backbone(BACKBONE, random_init=True), device=device)
        record = json.loads(Path(run["paths"]["results"]).read_text())
        results[device] = record["overall"] if "overall" in record else record
    cpu, gpu = results["cpu"], results["cuda"]

    def numbers(record, prefix=""):
        if isinstance(record, dict):
            out = {}
            for key, value in record.items():
                if key in ("timing", "features", "device", "machine", "paths", "feature_memory"):
                    continue
                out.update(numbers(value, f"{prefix}{key}."))
            return out
        return {prefix: record} if isinstance(record, (int, float)) and not isinstance(record, bool) else {}
    a, b = numbers(cpu), numbers(gpu)
    assert a and a.keys() == b.keys()
    differing = {k: (a[k], b[k]) for k in a if abs(a[k] - b[k]) > 1e-6}
    assert not differing


def test_functional_head_trains_and_infers_on_cuda():
    """One optimisation step of the head on CUDA gives the CPU's losses; inference gives the CPU's embeddings."""
    from correspondence.functional.losses import functional_loss, mask_loss, spatial_loss, total_loss
    from correspondence.functional.model import FunctionalHead, HeadConfig
    results = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        head = FunctionalHead(HeadConfig(feature_dim=32, text_dim=8, hidden=64, output=16, projection=24)).to(device)
        gen = torch.Generator().manual_seed(1)
        blocks = [torch.randn(4, 32, 8, 8, generator=gen).to(device) for _ in range(3)]
        co = torch.randint(0, 112, (4, 40, 2), generator=gen).to(device)  # 20 part + 20 rest pixels per image
        text = torch.randn(4, 8, generator=gen).to(device)
        optimiser = torch.optim.AdamW(head.parameters(), lr=1e-3)
        emb, logits = head.embed_pixels(head.fuse(blocks), co, text, 112)
        f0, f1 = emb[0::2], emb[1::2]
        terms = total_loss(functional_loss(f0[:, :20], f0[:, 20:], f1[:, :20], f1[:, 20:]),
                           mask_loss(logits[0::2, :20], logits[1::2, :20], logits[0::2, 20:], logits[1::2, 20:]),
                           spatial_loss(f0[:, :20], f1[:, :20]))
        optimiser.zero_grad()
        terms.total.backward()
        optimiser.step()
        with torch.no_grad():
            after, _ = head.dense_pixels(head.fuse(blocks), text, 112)
        results[device] = (terms.total.item(), after.cpu())
    assert results["cuda"][0] == pytest.approx(results["cpu"][0], rel=1e-4)
    assert torch.allclose(results["cuda"][1], results["cpu"][1], atol=1e-4)


def test_functional_embedder_and_discovery_on_cuda(scene):
    """The live stride map and the evaluation's every-pixel protocol (label transfer, part-first discovery) on
    CUDA give the CPU's results."""
    from correspondence.backbones import create_backbone
    from correspondence.functional.checkpoint import HeadCheckpoint
    from correspondence.functional.evaluate import AnnotatedPair, evaluate_pair
    from correspondence.functional.inference import FunctionalEmbedder, discover, valid_cells
    from correspondence.functional.model import FunctionalHead, HeadConfig
    demo, live, _, mask = scene
    rows, cols = np.nonzero(mask)
    rc = np.stack([rows[::max(1, len(rows) // 30)], cols[::max(1, len(rows) // 30)]], 1)
    pair = AnnotatedPair.from_full_images("p", "pour-with", "mug", "mug", demo, mask, live, mask, rc, rc)
    outs, records = {}, {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        backbone = create_backbone(BACKBONE, random_init=True)
        dim = backbone.spec.contract.feature_dim
        head = FunctionalHead(HeadConfig(feature_dim=dim, text_dim=8, hidden=64, output=16)).eval()
        checkpoint = HeadCheckpoint(head, BACKBONE, (-3, -2, -1), "none", {"pour-with": torch.ones(8)})
        embedder = FunctionalEmbedder.create(checkpoint, backbone, image_size=SIZE, device=device)
        a, pred_a = embedder(demo, "pour-with")
        b, pred_b = embedder(live, "pour-with")
        assert a.features.device.type == device
        found = discover(a, valid_cells(a, mask, pred_a), b, valid_cells(b, mask, pred_b))
        outs[device] = found
        crops = FunctionalEmbedder.create(checkpoint, backbone, image_size=224, device=device)
        assert crops.pixels(pair.image_a, "pour-with").emb.device.type == device
        records[device] = evaluate_pair(pair, crops)
    assert np.mean(np.all(np.abs(outs["cpu"].trg_xy - outs["cuda"].trg_xy) < 1e-3, 1)) >= 0.95
    for cpu, cuda in zip(records["cpu"], records["cuda"]):
        assert cuda["pck@23"] == pytest.approx(cpu["pck@23"], abs=0.1)
        assert cuda["best_f1@23"] == pytest.approx(cpu["best_f1@23"], abs=0.1)


def test_node_processor_processes_a_frame_on_cuda(tmp_path, scene):
    pytest.importorskip("yaml", reason="the node's parameter table needs PyYAML")
    from soco_ros.processor import FrameProcessor, Frame
    from soco_ros.parameters import defaults
    demo, live, keypoints, _ = scene
    folder = tmp_path / "demo"
    folder.mkdir()
    Image.fromarray(demo).save(folder / "rgb.png")
    (folder / "keypoints.json").write_text(json.dumps(keypoints))
    for fast in (False, True):
        params = {**defaults(), "backbone": BACKBONE, "random_weights": True, "image_size": SIZE, "device": "cuda",
                  "segmentation": "none", "demo_path": str(folder), "cuda_graphs": fast,
                  "dtype": "float16" if fast else "float32"}
        processor = FrameProcessor(params)
        processor.set_demo(str(folder))
        processed = processor.process(Frame(live, 0, "camera"))
        assert processor.matcher.extractor.device.type == "cuda"
        assert processor.matcher.extractor.runtime.cuda_graphs is fast
        assert len(processed.result.matches) == 32


def test_latency_command_on_cuda_reports_every_torch_variant(tmp_path):
    from correspondence.cli import main
    out = tmp_path / "lat"
    code = main(["bench", "latency", "--backbone", BACKBONE, "--random-weights", "--sizes", "224", "--device", "cuda",
                 "--fp16", "--runtimes", "torch,torch-cudagraphs", "--runs", "5", "--warmup", "2", "--no-pipeline",
                 "--out", str(out)])
    assert code == 0
    report = json.loads((out / "latency.json").read_text())
    rows = {r["runtime"]: r for r in report["rows"]}
    assert set(rows) == {"torch", "torch-cudagraphs"} and report["gpu"]
    assert rows["torch-cudagraphs"]["frame_median_ms"] > 0 and rows["torch-cudagraphs"]["peak_fraction"] > 0
