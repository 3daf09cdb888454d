"""UMD-i one-shot affordance transfer: reader (real zip and constructed folders), metrics on hand-computed
cases, transfer with oracle features, the chance / whole-mask floors, pair enumeration and the CLI."""
from __future__ import annotations

import argparse
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from conftest import SHARED
from correspondence.benchmarks.umd import (AFFORDANCE_CLASSES, AFFORDANCES, UMDDataset, UMDSample,
                                           affordance_index, chance_expected_iou, chance_prediction,
                                           enumerate_pairs, f_measure, iou, labels_from_ranks, metric_box,
                                           run_umd_benchmark, transfer_affordances)
from correspondence.cli import build_parser
from correspondence.cli import umd_cmd
from correspondence.coords import Convention
from correspondence.errors import ConfigError, InputError
from correspondence.features import FeatureMap
from correspondence.preprocessing import PreprocessSettings, preprocess

UMD_ZIP = SHARED / "data" / "umd_i" / "UMD_i.zip"
CLASS_COUNTS = {"bowl": 10, "cup": 6, "hammer": 4, "knife": 11, "ladle": 2, "mallet": 4, "mug": 19, "pot": 2,
                "scissors": 7, "scoop": 2, "shears": 2, "shovel": 2, "spoon": 8, "tenderizer": 2, "trowel": 5,
                "turner": 8}
GRASP, POUND = affordance_index("grasp"), affordance_index("pound")


@pytest.fixture(scope="module")
def umd() -> UMDDataset:
    if not UMD_ZIP.is_file():
        pytest.skip(f"UMD-i benchmark not available: {UMD_ZIP} is missing (the project's ../shared data folder)")
    return UMDDataset(UMD_ZIP)


# ------------------------------------------------------------------------------------ constructed data


def tool_ranks(height: int, width: int, rows: slice, handle: slice, head: slice) -> np.ndarray:
    """A hammer-like object: handle = primary grasp (rank 1), head = primary pound, secondary grasp (rank 2)."""
    ranks = np.zeros((height, width, len(AFFORDANCES)), np.uint8)
    for cols, primary, secondary in ((handle, GRASP, None), (head, POUND, GRASP)):
        ranks[rows, cols] = 9
        ranks[rows, cols, primary] = 1
        if secondary is not None:
            ranks[rows, cols, secondary] = 2
    return ranks


def write_sample(root: Path, name: str, ranks: np.ndarray, depth: bool = True, frame: str = "00000001") -> Path:
    folder = root / "UMD_i" / "dataset" / name
    folder.mkdir(parents=True, exist_ok=True)
    h, w = ranks.shape[:2]
    mask = (ranks > 0).any(-1)
    rng = np.random.default_rng(len(name))
    rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(folder / f"{name}_{frame}_rgb.jpg")
    Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{name}_{frame}_mask.jpg")
    if depth:
        Image.fromarray(np.full((h, w), 800, np.uint16)).save(folder / f"{name}_{frame}_depth.png")
    np.save(folder / f"{name}_{frame}_label_rank.npy", ranks)
    return folder


# 60 x 60 tools, mask rows 20..39 and cols 5..54 (1000 px); the handle/head split differs per object
SPLITS = {"hammer_01": 35, "hammer_02": 25, "mallet_01": 30, "mallet_02": 45}


def write_tools(root: Path) -> dict[str, np.ndarray]:
    ranks = {}
    for name, split in SPLITS.items():
        ranks[name] = tool_ranks(60, 60, slice(20, 40), slice(5, split), slice(split, 55))
        write_sample(root, name, ranks[name], depth=name != "mallet_02")
    return ranks


def test_reader_on_a_folder_and_a_zip_with_a_missing_depth(tmp_path):
    ranks = write_tools(tmp_path / "folder")
    archive = tmp_path / "UMD_i.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted((tmp_path / "folder").rglob("*")):
            if path.is_file():
                z.write(path, path.relative_to(tmp_path / "folder").as_posix())
    for root in (tmp_path / "folder", tmp_path / "folder" / "UMD_i" / "dataset", archive):
        data = UMDDataset(root)
        assert [s.name for s in data] == sorted(SPLITS)
        assert data.classes == {"hammer": ["hammer_01", "hammer_02"], "mallet": ["mallet_01", "mallet_02"]}
        mallet = data["mallet_02"]
        assert mallet.depth is None and mallet.class_name == "mallet" and mallet.frame == "00000001"
        hammer = data["hammer_01"]
        assert hammer.depth.dtype == np.float32 and np.allclose(hammer.depth, 0.8)
        assert hammer.rgb.shape == (60, 60, 3) and hammer.mask.sum() == 1000
        np.testing.assert_array_equal(hammer.ranks, ranks["hammer_01"])
        assert hammer.region("grasp").sum() == 20 * 30 and hammer.region("pound").sum() == 20 * 20
    ranked = UMDDataset(archive, label_rule="ranked")["hammer_01"]
    assert ranked.region("grasp").sum() == 1000  # the head's secondary grasp counts too
    assert len(UMDDataset(archive, classes=["mallet"])) == 2


def test_label_rules():
    ranks = np.array([[[0, 0, 0], [1, 9, 2], [9, 3, 1]]], np.uint8)
    np.testing.assert_array_equal(labels_from_ranks(ranks, "primary"), ranks == 1)
    np.testing.assert_array_equal(labels_from_ranks(ranks, "ranked"), [[[0, 0, 0], [1, 0, 1], [0, 1, 1]]])
    with pytest.raises(ConfigError, match="label rule"):
        labels_from_ranks(ranks, "nonzero")


def test_reader_errors_name_the_file_and_field(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        UMDDataset(tmp_path / "nowhere.zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no UMD-i samples"):
        UMDDataset(tmp_path / "empty")
    bad = tool_ranks(60, 60, slice(20, 40), slice(5, 30), slice(30, 55))
    folder = write_sample(tmp_path / "a", "knife_01", bad)
    np.save(folder / "knife_01_00000001_label_rank.npy", bad[:50])  # 50 rows of labels for a 60-row image
    with pytest.raises(InputError, match=r"labels .*knife_01_00000001_label_rank\.npy.*shape"):
        UMDDataset(tmp_path / "a")
    folder = write_sample(tmp_path / "b", "knife_01", bad)
    (folder / "knife_01_00000001_rgb.jpg").unlink()
    with pytest.raises(InputError, match=r"knife_01.*no rgb file"):
        UMDDataset(tmp_path / "b")
    folder = write_sample(tmp_path / "c", "knife_01", bad)
    (folder / "knife_01_00000001_mask.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match=r"mask: cannot decode image .*knife_01_00000001_mask\.jpg"):
        UMDDataset(tmp_path / "c")
    not_zip = tmp_path / "UMD_i.zip"
    not_zip.write_text("hello")
    with pytest.raises(InputError, match="not a zip"):
        UMDDataset(not_zip)


# ------------------------------------------------------------------------------------------- real data


def test_real_umd_i_zip(umd):
    assert len(umd) == 94
    assert {c: len(names) for c, names in umd.classes.items()} == CLASS_COUNTS
    with zipfile.ZipFile(UMD_ZIP) as z:
        depth_files = {n.split("/")[-2] for n in z.namelist() if n.endswith("_depth.png")}
    for s in umd:
        h, w = s.rgb.shape[:2]
        assert s.rgb.dtype == np.uint8 and s.rgb.shape == (h, w, 3)
        assert s.mask.shape == (h, w) and s.mask.dtype == bool and s.mask.any()
        assert s.labels.shape == s.ranks.shape == (h, w, 7) and s.labels.dtype == bool
        assert 80 <= max(h, w) <= 400
        # the depth is None exactly when the sample folder has no depth file
        assert (s.depth is None) == (s.name not in depth_files)
        if s.depth is not None:
            assert s.depth.shape == (h, w) and s.depth.dtype == np.float32
        # primary labels partition the (thresholded JPEG) mask: one rank-1 affordance per object pixel
        np.testing.assert_array_equal(s.labels.sum(-1), s.mask.astype(int))
        assert set(np.unique(s.ranks)) <= {0, 1, 2, 3, 9}


def test_real_pair_counts_follow_the_readme_loops(umd):
    for affordance, classes in AFFORDANCE_CLASSES.items():
        n = [CLASS_COUNTS[c] for c in classes]
        intra = [p for p in enumerate_pairs(umd, "intra") if p.affordance == affordance]
        inter = [p for p in enumerate_pairs(umd, "inter") if p.affordance == affordance]
        assert len(intra) == sum(k * (k - 1) for k in n)
        assert len(inter) == sum(n) ** 2 - sum(k * k for k in n)
        assert all(umd[p.reference].class_name == umd[p.target].class_name != "" and p.reference != p.target
                   for p in intra)
        assert all(umd[p.reference].class_name != umd[p.target].class_name for p in inter)
        assert all({umd[p.reference].class_name, umd[p.target].class_name} <= set(classes) for p in inter)
    assert len([p for p in enumerate_pairs(umd, "inter") if p.affordance == "grasp"]) == 5040
    # with primary labels only two listed combinations have objects without the region (skipped pairs)
    lacking = {(s.class_name, a) for a, classes in AFFORDANCE_CLASSES.items() for s in umd
               if s.class_name in classes and not s.has(a)}
    assert lacking == {("mug", "grasp"), ("ladle", "scoop")}
    assert sum(not s.has("grasp") for s in umd if s.class_name == "mug") == 7


# -------------------------------------------------------------------------------------------- metrics


def test_iou_hand_computed():
    gt = np.zeros((6, 6), bool)
    gt[1:4, 1:4] = True  # 9 px
    pred = np.zeros_like(gt)
    pred[2:4, 2:5] = True  # 6 px, 4 inside gt
    assert iou(pred, gt) == pytest.approx(4 / 11)
    assert iou(gt, gt) == 1.0
    assert iou(np.zeros_like(gt), gt) == 0.0
    assert iou(np.zeros_like(gt), np.zeros_like(gt)) == 1.0
    with pytest.raises(InputError, match="shape"):
        iou(gt[:5], gt)


def test_weighted_f_measure_hand_computed():
    gt = np.zeros((30, 30), bool)
    gt[10:20, 10:20] = True  # 100 px, at least 10 px from every border
    assert f_measure(gt, gt) == pytest.approx(1.0, abs=1e-12)
    assert f_measure(np.zeros_like(gt), gt) == pytest.approx(0.0, abs=1e-12)
    # one false positive 5 px right of the block: weight 2 - 0.5 ** (5 / 5) = 1.5, recall stays 1
    pred = gt.copy()
    pred[14, 24] = True
    precision = 100 / (100 + 1.5)
    assert f_measure(pred, gt) == pytest.approx(2 * precision / (1 + precision), abs=1e-12)
    # one false negative in the middle of a 21 x 21 block: its error is the Gaussian's centre weight K00
    gt = np.zeros((41, 41), bool)
    gt[10:31, 10:31] = True
    pred = gt.copy()
    pred[20, 20] = False
    k00 = 1.0 / sum(math.exp(-x * x / 50.0) for x in range(-3, 4)) ** 2
    recall = 1 - k00 / 441
    assert f_measure(pred, gt) == pytest.approx(2 * recall / (1 + recall), abs=1e-12)
    # empty ground truth (undefined in WFb.m)
    assert f_measure(np.zeros_like(gt), np.zeros_like(gt)) == 1.0
    assert f_measure(gt, np.zeros_like(gt)) == 0.0
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        f_measure(gt * 2.0, gt)


def test_weighted_f_measure_on_the_metric_box_is_exact():
    rng = np.random.default_rng(3)
    for _ in range(5):
        mask = ndimage.gaussian_filter(rng.random((90, 80)), 6) > 0.5
        mask[:, :4] = mask[:, :4] & (rng.random() < 0.5)  # sometimes touching the border
        blobs = ndimage.gaussian_filter(rng.random((90, 80)), 3)
        gt = mask & (blobs > np.median(blobs))
        pred = mask & (ndimage.shift(blobs, (2, -3), order=0) > np.median(blobs))
        box = metric_box(mask, gt)
        assert f_measure(pred[box], gt[box]) == pytest.approx(f_measure(pred, gt), abs=1e-12)
        assert iou(pred[box], gt[box]) == iou(pred, gt)


# ------------------------------------------------------------------------------------------- transfer

SIZE, PATCH = 112, 14  # 8 x 8 grid; processed == original


def parts_on_grid(rows: range, parts: dict[int, range]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mask, HxWx7 labels and per-cell part id (-1 = background) for an object made of cell-aligned parts."""
    cells = np.full((SIZE // PATCH, SIZE // PATCH), -1)
    for k, cols in parts.items():
        for r in rows:
            cells[r, list(cols)] = k
    pixels = np.kron(cells, np.ones((PATCH, PATCH), int))
    labels = np.stack([pixels == k for k in range(len(AFFORDANCES))], -1)
    return pixels >= 0, labels, cells


def oracle_fmap(cells: np.ndarray) -> FeatureMap:
    """Features that encode the true affordance per cell: one-hot part id, a weak background vector elsewhere."""
    _, geometry = preprocess(np.zeros((SIZE, SIZE, 3), np.uint8), PreprocessSettings(size=SIZE), PATCH)
    grid = torch.zeros(len(AFFORDANCES) + 1, *cells.shape)
    grid[-1] = 0.05
    for (r, c), k in np.ndenumerate(cells):
        if k >= 0:
            grid[:, r, c] = 0
            grid[k, r, c] = 1.0
    return FeatureMap(grid, geometry, PATCH, Convention.PATCH_CENTER)


def test_transfer_with_oracle_features_is_exact():
    ref_mask, ref_labels, ref_cells = parts_on_grid(range(2, 5), {GRASP: range(1, 4), POUND: range(4, 7)})
    # the target is mirrored, taller and shifted: head left, long handle right
    trg_mask, trg_labels, trg_cells = parts_on_grid(range(3, 7), {POUND: range(0, 2), GRASP: range(2, 8)})
    pred = transfer_affordances(oracle_fmap(ref_cells), ref_mask, ref_labels, oracle_fmap(trg_cells), trg_mask)
    assert pred.shape == (SIZE, SIZE, 7) and pred.dtype == bool
    assert not pred[~trg_mask].any()
    for k in (GRASP, POUND):
        assert iou(pred[..., k], trg_labels[..., k]) == 1.0
        assert f_measure(pred[..., k], trg_labels[..., k]) == pytest.approx(1.0)
    np.testing.assert_array_equal(pred, trg_labels)
    # per-pixel bilinear descriptors blur part borders but stay close
    pixel = transfer_affordances(oracle_fmap(ref_cells), ref_mask, ref_labels, oracle_fmap(trg_cells), trg_mask,
                                 mode="pixel")
    assert iou(pixel[..., GRASP], trg_labels[..., GRASP]) > 0.85
    with pytest.raises(InputError, match="target mask"):
        transfer_affordances(oracle_fmap(ref_cells), ref_mask, ref_labels, oracle_fmap(trg_cells), trg_mask[:50])
    with pytest.raises(ConfigError, match="mode"):
        transfer_affordances(oracle_fmap(ref_cells), ref_mask, ref_labels, oracle_fmap(trg_cells), trg_mask,
                             mode="soft")


def test_transfer_only_matches_reference_cells_inside_the_mask():
    ref_mask, ref_labels, ref_cells = parts_on_grid(range(2, 5), {GRASP: range(1, 4), POUND: range(4, 7)})
    trg_mask, trg_labels, trg_cells = parts_on_grid(range(3, 7), {POUND: range(0, 2), GRASP: range(2, 8)})
    ref = oracle_fmap(ref_cells)
    ref.features[:, 0, 0] = 0
    ref.features[GRASP, 0, 0] = 1.0  # a background cell that looks exactly like the target's handle...
    ref.features[POUND, 2, 1] = 2.0  # ...while the reference's own handle cell is a bit off
    pred = transfer_affordances(ref, ref_mask, ref_labels, oracle_fmap(trg_cells), trg_mask)
    assert iou(pred[..., GRASP], trg_labels[..., GRASP]) == 1.0  # still the handle: (0, 0) is not a candidate


# --------------------------------------------------------------------------------------------- floors


def test_chance_is_close_to_its_analytic_expectation():
    ref_mask = np.zeros((100, 100), bool)
    ref_mask[:, :50] = True  # 5000 px, 30 % of them the part
    ref_region = ref_mask.copy()
    ref_region[30:, :] = False
    trg_mask = np.ones((120, 100), bool)  # 12000 px, 40 % of them the part
    gt = np.zeros_like(trg_mask)
    gt[:48] = True
    values = [iou(chance_prediction(ref_mask, ref_region, trg_mask, np.random.default_rng(seed)), gt)
              for seed in range(8)]
    expected = chance_expected_iou(0.3, 12000, 4800)
    assert expected == pytest.approx(0.12 / 0.58)
    assert np.mean(values) == pytest.approx(expected, abs=0.004)
    pred = chance_prediction(ref_mask, ref_region, trg_mask, np.random.default_rng(1))
    assert pred.mean() == pytest.approx(0.3, abs=0.02)
    np.testing.assert_array_equal(pred, chance_prediction(ref_mask, ref_region, trg_mask, np.random.default_rng(1)))


def test_floors_end_to_end_on_constructed_tools(tmp_path):
    write_tools(tmp_path / "data")
    result = run_umd_benchmark(tmp_path / "data", None, tmp_path / "out", methods=("chance", "whole-mask"),
                               progress=False)
    whole = result["results"]["whole-mask"]
    grasp_share = {n: (s - 5) / 50 for n, s in SPLITS.items()}
    # whole mask: IoU = the target's region share; intra grasp pairs: each object is a target once
    assert whole["intra"]["per_affordance"]["grasp"]["iou"] == pytest.approx(np.mean(list(grasp_share.values())))
    assert whole["intra"]["per_affordance"]["pound"]["iou"] == pytest.approx(
        np.mean([1 - g for g in grasp_share.values()]))
    assert whole["inter"]["per_affordance"]["grasp"]["pairs"] == 8
    assert set(whole["intra"]["per_affordance"]) == {"grasp", "pound"}
    assert whole["intra"]["mean"]["iou"] == pytest.approx(0.5)
    chance = result["results"]["chance"]["intra"]["per_affordance"]["grasp"]
    assert 0.2 < chance["iou"] < 0.6 and chance["pairs"] == 4
    report = json.loads(Path(result["paths"]["json"]).read_text())
    assert report["pairs"]["intra"]["grasp"] == {"total": 4, "skipped_empty": 0, "evaluated": 4}
    assert report["dataset"]["without_depth"] == ["mallet_02"]
    assert Path(result["paths"]["plot"]).stat().st_size > 0
    again = run_umd_benchmark(tmp_path / "data", None, tmp_path / "out2", methods=("chance",), progress=False,
                              plot=False)
    assert again["results"]["chance"] == result["results"]["chance"]  # seeded


def test_a_functional_head_plugs_in_as_a_feature_callable(tmp_path):
    write_tools(tmp_path / "data")
    data = UMDDataset(tmp_path / "data")

    def oracle_features(sample: UMDSample) -> FeatureMap:
        _, geometry = preprocess(sample.rgb, PreprocessSettings(size=56), PATCH)  # 4 x 4 grid on 60 px
        grid = torch.zeros(3, 4, 4)
        processed = [np.asarray(Image.fromarray(sample.region(a).astype(np.uint8) * 255).resize((4, 4),
                                                                                               Image.BOX)) / 255
                     for a in ("grasp", "pound")]
        grid[0], grid[1] = torch.tensor(processed[0]), torch.tensor(processed[1])
        grid[2] = 0.01
        return FeatureMap(grid, geometry, PATCH, Convention.PATCH_CENTER)

    oracle_features.name = "oracle-head"
    result = run_umd_benchmark(data, oracle_features, tmp_path / "out", progress=False, plot=False)
    assert result["methods"]["transfer"] == "oracle-head"
    transfer, whole = result["results"]["transfer"], result["results"]["whole-mask"]
    for setting in ("intra", "inter"):
        assert transfer[setting]["mean"]["iou"] > whole[setting]["mean"]["iou"] + 0.1
    assert result["timing"]["images_encoded"] == 4


# ------------------------------------------------------------------------------------------------ CLI


def bench_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="soco")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench").add_subparsers(dest="bench", required=True)
    umd_cmd.add_bench_parser(bench)
    return parser


def test_umd_module_sits_in_the_command_list():
    assert umd_cmd.add_parser(argparse.ArgumentParser().add_subparsers()) is None
    build_parser()  # the root parser still builds with the module registered


def test_cli_end_to_end_on_the_real_zip(umd, tmp_path, capsys):
    args = bench_parser().parse_args(["bench", "umd", "--root", str(UMD_ZIP), "--backbone", "daisy", "--size", "112",
                                      "--classes", "hammer,mallet", "--max-pairs", "3", "--seed", "0",
                                      "--no-progress", "--out", str(tmp_path / "out")])
    assert args.handler(args) == 0
    printed = capsys.readouterr().out
    assert "| daisy |" in printed and "| chance |" in printed and "| whole-mask |" in printed
    report = json.loads((tmp_path / "out" / "umd_results.json").read_text())
    assert report["features"]["description"]["backbone"]["name"] == "daisy"
    assert report["features"]["description"]["effective_image_size"] == 112
    assert report["pairs"]["intra"]["pound"] == {"total": 24, "skipped_empty": 0, "evaluated": 3}
    assert report["pairs"]["inter"]["grasp"]["evaluated"] == 3
    assert report["timing"]["images_encoded"] <= 8
    for method in ("transfer", "chance", "whole-mask"):
        for setting in ("intra", "inter"):
            mean = report["results"][method][setting]["mean"]
            assert 0 <= mean["iou"] <= 1 and 0 <= mean["f"] <= 1
    markdown = (tmp_path / "out" / "umd_results.md").read_text()
    assert "intra IoU" in markdown and "inter Fw" in markdown and "wrap-grasp" in markdown
    assert (tmp_path / "out" / "umd_results.png").stat().st_size > 0


def test_cli_errors(tmp_path):
    args = bench_parser().parse_args(["bench", "umd", "--root", str(tmp_path / "missing"), "--methods",
                                      "chance", "--out", str(tmp_path / "out")])
    with pytest.raises(InputError, match="does not exist"):
        args.handler(args)
    args = bench_parser().parse_args(["bench", "umd", "--root", str(tmp_path), "--methods", "chance,oracle"])
    with pytest.raises(ConfigError, match="unknown method"):
        args.handler(args)
