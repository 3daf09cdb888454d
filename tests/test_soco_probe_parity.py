"""Parity of the SOCO linear probe (`soco bench soco --linear-probe`) with the released reference, step by step.

The reference side below is written in this file from the released source, independently of the project's code:
GenIntel/OmniProbe ``omniprobe/scripts/eval_correspondence_linear_probe_soco.py`` (``set_seed``, ``AverageMeter``,
``soco_collate_fn``, ``compute_predictions_with_probe``, ``evaluate_matches``, ``evaluate_dataset_with_probe``,
``compute_batch_training_loss``, ``train_probe_epoch``, ``run_task``), ``omniprobe/models/correspondence_probe.py``
(``LinearCorrespondenceProbe``, ``init_mode="identity"``), ``omniprobe/datasets/soco.py`` (``SOCODataset``: class
folders and pair files sorted, integer keypoints scaled inside an int tensor), ``omniprobe/utils/correspondence.py``
(``argmax_2d``) and ``configs/task/correspondence_soco_linear_probe.yaml``. It reads the pair files with ``json``;
the only thing both sides share is the dense map of each image (``model(images)``: a tiny random ViT's maps).

Asserted on a non-square ``soco synth soco`` set whose train split has pairs without SOC matches, for the paper's
recipe (one batch of the whole split: batch 32 > 24 pairs) and for a recipe with small batches, a large lr and
best-on-test epoch selection (drop_last, skipped batches, a selected epoch): the loss of every step and of every
epoch, the probe weights, the per-epoch test recalls and the selected epoch, every test prediction, and the
published metric (SOC and CC recall at 0.1, keypoints pooled per class, mean over classes).
"""
from __future__ import annotations

import glob
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as nnF
from soco_reference import ref_pair

SIZE = 154  # the effective image size S (an 11 x 11 grid of 14 px patches)
THRESH = 0.10


# ---- the shared input: one dense map per image ------------------------------------------------------------------

@pytest.fixture(scope="module")
def soco_set(tmp_path_factory):
    """A non-square synthetic set; every other train pair loses its SOC matches (it keeps its CC ones)."""
    from correspondence.world.synth import SynthConfig, synth_soco
    root = tmp_path_factory.mktemp("probe_parity")
    synth_soco(SynthConfig(out=str(root), categories=("car", "mug", "chair"), views=9, size=175,
                           pairs_per_category=8, cross_pairs_per_group=0, seed=3, progress=False, non_square=True))
    for path in sorted((root / "PairAnnotations" / "trainsplits" / "train").rglob("*.json"))[::2]:
        pair = json.loads(path.read_text())
        pair["semantic_overlap"] = []
        path.write_text(json.dumps(pair))
    return root


@pytest.fixture(scope="module")
def shared(soco_set):
    """Our feature store (what our side reads) and the same maps, contiguous, by (category, image) for the
    reference (what its ``model(images)`` returns)."""
    from correspondence.backbones import create_backbone
    from correspondence.benchmarks.soco import ProtocolSettings, SocoPairs
    from correspondence.benchmarks.soco.features_store import FeatureStore
    from correspondence.features import FeatureExtractor
    settings = ProtocolSettings(size=SIZE, tasks=("cc", "soc"))
    store = FeatureStore(FeatureExtractor(create_backbone("test_vit_tiny"), settings.extraction(), cache_size=0))
    maps = {}
    for kind in ("train", "test"):
        for pair in SocoPairs(soco_set, kind):
            for view in (pair.source, pair.target):
                fmap = store(view)
                assert fmap.grid_wh == (SIZE // 14, SIZE // 14)
                maps[(view.category, view.image_name)] = fmap.features.contiguous().clone()
    return settings, store, maps


# ---- the reference, re-implemented from the released source -----------------------------------------------------

class RefDataset(torch.utils.data.Dataset):
    """``SOCODataset`` (use_bbox=False) returning the image's dense map where the image would be."""

    def __init__(self, root: Path, subdir: str, maps: dict, class_name: str | None = None) -> None:
        self.root, self.maps = root, maps
        pair_root = root / "PairAnnotations" / subdir
        classes = [class_name] if class_name else sorted(os.listdir(pair_root))
        self.instances = []
        for cls in classes:
            if not (pair_root / cls).exists():
                continue
            for pf in sorted(glob.glob(str(pair_root / cls / "*.json"))):
                with open(pf) as f:
                    self.instances.append(json.load(f))

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, index: int):
        pair = self.instances[index]
        ref = ref_pair(self.root, pair, SIZE)
        meta = {"semantic_pairs": ref.semantic_pairs, "concept_map": ref.concept_map, "pair_id": pair["pair_id"],
                "hw_j": ref.hw_j}
        return (self.maps[(ref.src_cat, pair["src_image"])], ref.kps_i, self.maps[(ref.trg_cat, pair["trg_image"])],
                ref.kps_j, ref.thresh_scale, meta)


def ref_collate(batch):
    """``soco_collate_fn``: images stacked, keypoints and metadata as lists."""
    return {"img_i": torch.stack([b[0] for b in batch]), "img_j": torch.stack([b[2] for b in batch]),
            "kps_i": [b[1] for b in batch], "kps_j": [b[3] for b in batch], "thresh_scale": [b[4] for b in batch],
            "meta": [b[5] for b in batch]}


class RefProbe(torch.nn.Module):
    """``LinearCorrespondenceProbe(init_mode="identity", bias=True)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(dim, dim, bias=True)
        torch.nn.init.eye_(self.linear.weight[:dim, :dim])
        torch.nn.init.zeros_(self.linear.bias)

    def forward(self, x):
        return self.linear(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def ref_batch_loss(feats_i, feats_j, kps_i_list, kps_j_list, meta_list, image_size, temperature):
    """``compute_batch_training_loss``."""
    total_loss, valid_pairs = 0.0, 0
    for b in range(feats_i.shape[0]):
        kps_i = kps_i_list[b].float().clone()
        kps_j = kps_j_list[b].float().clone()
        kps_i[:, :2] = kps_i[:, :2] / image_size
        kps_j[:, :2] = kps_j[:, :2] / image_size
        semantic_pairs = meta_list[b].get("semantic_pairs", [])
        if len(semantic_pairs) == 0:
            continue
        src = [s for s, t in semantic_pairs if kps_i[s, 2] == 1 and kps_j[t, 2] == 1]
        trg = [t for s, t in semantic_pairs if kps_i[s, 2] == 1 and kps_j[t, 2] == 1]
        if not src:
            continue
        ndc = (kps_i[torch.tensor(src)][:, :2].float() * 2 - 1)[None, None]
        kp_i_F = nnF.grid_sample(feats_i[b:b + 1], ndc, mode="bilinear", align_corners=True)[0, :, 0].t()
        valid_kps_j = kps_j[torch.tensor(trg)]
        C, H, W = feats_j[b].shape
        sim_all = torch.mm(kp_i_F, feats_j[b].reshape(C, H * W).t().t()) / temperature
        col = (valid_kps_j[:, 0] * (W - 1)).round().long().clamp(0, W - 1)
        row = (valid_kps_j[:, 1] * (H - 1)).round().long().clamp(0, H - 1)
        total_loss += nnF.cross_entropy(sim_all, row * W + col)
        valid_pairs += 1
    return None if valid_pairs == 0 else total_loss / valid_pairs


def ref_train_epoch(probe, loader, optimizer, image_size, temperature, log):
    """``train_probe_epoch`` (the backbone is the identity on the shared maps); returns ``AverageMeter.avg``."""
    total, count, avg = 0.0, 0, 0
    for batch in loader:
        optimizer.zero_grad()
        batch_size = batch["img_i"].shape[0]
        with torch.no_grad():
            feats = torch.cat([batch["img_i"], batch["img_j"]], dim=0)
        feats = nnF.normalize(probe(feats), p=2, dim=1)
        loss = ref_batch_loss(feats[:batch_size], feats[batch_size:], batch["kps_i"], batch["kps_j"], batch["meta"],
                              image_size, temperature)
        if loss is None:
            log["skipped"] += 1
            continue
        loss.backward()
        optimizer.step()
        log["steps"].append(loss.item())
        total += loss.item() * batch_size
        count += batch_size
        avg = total / count
    return avg


def ref_predict(probe, instance):
    """``compute_predictions_with_probe`` (argmax) + ``evaluate_matches``: prediction, SOC and CC errors."""
    feat_i, kps_i, feat_j, kps_j, scale, meta = instance
    with torch.no_grad():
        feats = nnF.normalize(probe(torch.stack((feat_i, feat_j))), p=2, dim=1)
    kps_i, kps_j = kps_i.float(), kps_j.float()
    kps_i[:, :2] = kps_i[:, :2] / SIZE
    kps_j[:, :2] = kps_j[:, :2] / SIZE
    query = nnF.grid_sample(feats[0][None], (kps_i[:, :2] * 2 - 1)[None, None], mode="bilinear",
                            align_corners=True)[0, :, 0].t()
    heatmaps = torch.einsum("kf,fhw->khw", query, feats[1])
    flat = torch.flatten(heatmaps, start_dim=-2).argmax(dim=-1)
    w = heatmaps.shape[-1]
    pred = torch.stack((flat % w, flat // w), dim=-1).float().cpu() / feats.shape[-1]
    sem = [(pred[s] - kps_j[t, :2]).norm(p=2) / scale for s, t in meta["semantic_pairs"]]
    concept = [min((pred[s] - kps_j[t, :2]).norm(p=2) for t in ts) / scale for s, ts in meta["concept_map"].items()]
    return pred, (torch.tensor(sem) if sem else torch.tensor([])), (torch.tensor(concept) if concept else
                                                                    torch.tensor([]))


def ref_recalls(probe, dataset):
    """``evaluate_dataset_with_probe``: (semantic, concept) recall, keypoints pooled; and every prediction."""
    semantic, concept, preds = [], [], {}
    for i in range(len(dataset)):
        pred, sem, con = ref_predict(probe, dataset[i])
        preds[dataset.instances[i]["pair_id"]] = pred.double() * dataset[i][5]["hw_j"]
        if sem.numel():
            semantic.append(sem)
        if con.numel():
            concept.append(con)

    def recall(errors):
        return float("nan") if not errors else (torch.cat(errors) < THRESH).float().mean().item() * 100.0
    return recall(semantic), recall(concept), preds


def ref_run_task(root: Path, maps: dict, cfg: dict, seed: int = 8) -> dict:
    """``run_task`` from the seeds to the per-class means (eval_before_training: false)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # set_seed (it also seeds random and numpy: nothing here draws from them)
        train = RefDataset(root, "trainsplits/train", maps)
        test = RefDataset(root, "trainsplits/test", maps)
        dim = int(train[0][0].shape[0])
        probe = RefProbe(dim)
        batch_size = min(cfg["batch_size"], len(train))
        g = torch.Generator()
        g.manual_seed(seed)
        loader = torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True, num_workers=0,
                                             collate_fn=ref_collate, drop_last=len(train) > batch_size, generator=g)
        optimizer = torch.optim.Adam(probe.parameters(), lr=cfg["lr"], weight_decay=0.0)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg["epochs"],
                                                               eta_min=cfg["lr"] * 0.01)
        log = {"steps": [], "skipped": 0, "epoch_losses": [], "scores": [], "dropped": len(train) % batch_size
               if len(train) > batch_size else 0}
        best_recall, best_state = 0, None
        for epoch in range(1, cfg["epochs"] + 1):
            torch.manual_seed(seed + epoch)  # set_seed(seed + epoch)
            log["epoch_losses"].append(ref_train_epoch(probe, loader, optimizer, SIZE, 0.07, log))
            scheduler.step()
            sem, concept, _ = ref_recalls(probe, test)
            avg = (sem + concept) / 2 if not (np.isnan(sem) or np.isnan(concept)) else sem
            log["scores"].append((sem, concept))
            if avg > best_recall:
                best_recall, log["best_epoch"] = avg, epoch
                best_state = {k: v.cpu().clone() for k, v in probe.state_dict().items()}
        log["last_state"] = {k: v.clone() for k, v in probe.state_dict().items()}
        if best_state is not None:
            probe.load_state_dict(best_state)
        log["best_state"] = {k: v.clone() for k, v in probe.state_dict().items()}
        return log


def ref_final(root: Path, maps: dict, state: dict) -> dict:
    """The final per-class evaluation of ``run_task``: recall per class, the mean over classes, predictions."""
    probe = RefProbe(int(state["linear.weight"].shape[0]))
    probe.load_state_dict(state)
    classes = sorted(d.name for d in (root / "PairAnnotations" / "trainsplits" / "test").iterdir() if d.is_dir())
    results, preds = {}, {}
    for cls in classes:
        dataset = RefDataset(root, "trainsplits/test", maps, class_name=cls)
        if len(dataset) == 0:
            continue
        sem, concept, p = ref_recalls(probe, dataset)
        results[cls] = (sem, concept)
        preds.update(p)
    means = [float(np.mean([v[i] for v in results.values() if not np.isnan(v[i])])) for i in (0, 1)]
    return {"per_class": results, "soc": means[0], "cc": means[1], "pred": preds}


# ---- our side ---------------------------------------------------------------------------------------------------

def our_run(root: Path, settings, store, config):
    from correspondence.benchmarks.soco import SocoPairs
    from correspondence.benchmarks.soco import probe_eval
    from correspondence.benchmarks.soco.probe import train_probe
    test_settings = probe_eval.evaluation_settings(settings, config.thresh)
    classes = probe_eval.by_class(list(SocoPairs(root, "test")))

    def score(probe):
        return probe_eval.selection_recalls(probe_eval.evaluate_classes(classes, probe.wrap(store), test_settings),
                                            test_settings, config.thresh)
    training = train_probe(list(SocoPairs(root, "train")), store, settings, config, progress=False,
                           score_epoch=score if config.epoch_selection == "best-on-test" else None)
    records = probe_eval.evaluate_classes(classes, training.probe.wrap(store), test_settings)
    return training, probe_eval.summary(records, test_settings, config.thresh), classes, test_settings


def our_predictions(classes, source, settings) -> dict:
    from correspondence.benchmarks.soco.evaluator import evaluate_pair
    return {pair.pair_id: evaluate_pair(pair, source, settings)[2]["prediction"]
            for pairs in classes.values() for pair in pairs}


# ---- tests ------------------------------------------------------------------------------------------------------

RECIPES = {
    "paper": ({}, {"batch_size": 32, "lr": 1e-3, "epochs": 4}),
    "small-batches-best-on-test": ({"batch_pairs": 5, "lr": 0.05, "epochs": 4, "epoch_selection": "best-on-test"},
                                   {"batch_size": 5, "lr": 0.05, "epochs": 4}),
}


@pytest.fixture(scope="module")
def reference_runs(soco_set, shared):
    """The released script's run of each recipe, computed once."""
    runs: dict[str, dict] = {}

    def run(recipe: str) -> dict:
        if recipe not in runs:
            runs[recipe] = ref_run_task(soco_set, shared[2], RECIPES[recipe][1])
        return runs[recipe]
    return run


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_training_and_evaluation_equal_the_released_script(soco_set, shared, reference_runs, recipe):
    from correspondence.benchmarks.soco.probe import ProbeConfig
    settings, store, maps = shared
    config = ProbeConfig(**RECIPES[recipe][0])
    reference = reference_runs(recipe)
    training, summary, classes, test_settings = our_run(soco_set, settings, store, config)

    # every step's loss and every epoch's (AverageMeter) loss
    assert len(training.step_losses) == len(reference["steps"]) > 0
    np.testing.assert_allclose(training.step_losses, reference["steps"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(training.epoch_losses, reference["epoch_losses"], rtol=1e-5, atol=1e-6)
    # the probe weights: after the last epoch, or at the epoch chosen on the test split
    best = config.epoch_selection == "best-on-test"
    state = reference["best_state"] if best else reference["last_state"]
    for name, value in training.probe.state_dict().items():
        torch.testing.assert_close(value.cpu(), state[name], rtol=1e-5, atol=1e-6)
    if best:
        assert training.selected_epoch == reference["best_epoch"]
        for ours, (sem, concept) in zip(training.epoch_scores, reference["scores"]):
            assert ours["soc"] == pytest.approx(sem, abs=1e-9) and ours["cc"] == pytest.approx(concept, abs=1e-9)

    # the published metric and every prediction on the test split
    final = ref_final(soco_set, maps, state)
    key = f"{THRESH:g}"
    assert summary["soc"][key] == pytest.approx(final["soc"], abs=1e-9)
    assert summary["cc"][key] == pytest.approx(final["cc"], abs=1e-9)
    for cls, (sem, concept) in final["per_class"].items():
        assert summary["per_class"]["soc"][cls] == pytest.approx(None if math.isnan(sem) else sem, abs=1e-9)
        assert summary["per_class"]["cc"][cls] == pytest.approx(None if math.isnan(concept) else concept, abs=1e-9)
    predictions = our_predictions(classes, training.probe.wrap(store), test_settings)
    assert predictions.keys() == final["pred"].keys()
    worst = max(float(np.abs(predictions[k] - final["pred"][k].numpy()).max()) for k in predictions)
    assert worst <= 1e-4, f"largest prediction difference {worst} px"
    differing = sum(int((predictions[k] != final["pred"][k].numpy()).any(axis=1).sum()) for k in predictions)
    assert differing == 0, f"{differing} predictions differ in the last bits (largest {worst} px)"


def test_the_set_exercises_what_parity_is_about(soco_set, reference_runs):
    """The recipes above meet every rule the parity is about: pairs without SOC matches in the shuffled batches (and
    a batch with none, skipped), a dropped last batch, a selected epoch that is not the last, and labels where the
    reference's truncated float32 ``round(p / S * (w - 1))`` differs from rounding the exact position."""
    reference = reference_runs("small-batches-best-on-test")
    assert reference["skipped"] > 0 and reference["dropped"] > 0
    assert reference["best_epoch"] != RECIPES["small-batches-best-on-test"][1]["epochs"]
    differ = 0
    for path in sorted((soco_set / "PairAnnotations" / "trainsplits" / "train").rglob("*.json")):
        pair = json.loads(path.read_text())
        side = max(pair["trg_imsize"])
        names = set(pair["semantic_overlap"])
        w = SIZE // 14
        for k in pair["trg_keypoints"]:
            if k["name"] not in names:
                continue
            for value in k["pos"]:
                p = (torch.tensor([int(value)], dtype=torch.int32) * SIZE / side).to(torch.int32)  # the int tensor
                ours = int((p.float() / SIZE * (w - 1)).round()[0])
                differ += ours != int(np.round(value / side * (w - 1)))
    assert differ > 0


def test_probe_config_refuses_nonsense_and_records_the_recipe():
    from correspondence.benchmarks.soco.probe import ProbeConfig, recipe_record
    from correspondence.errors import ConfigError
    with pytest.raises(ConfigError, match="epoch_selection"):
        ProbeConfig(epoch_selection="best")
    with pytest.raises(ConfigError, match="lr"):
        ProbeConfig(lr=0)
    record = recipe_record(ProbeConfig())
    assert record["epochs"] == 4 and record["batch_pairs"] == 32 and record["seed"] == 8
    assert record["epoch_selection"] == "last" and record["reference_epoch_selection"] == "best-on-test"
