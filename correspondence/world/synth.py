"""Dataset generation: SOCO-format keypoint datasets, HANDAL-format RGB-D scenes with functional pairs, and the
functional head's training pairs, all from the procedural world, deterministic in the seed."""
from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..errors import ConfigError
from .families import categories as all_categories
from .families import get_category, make_instance
from .groundtruth import align_functional_parts, functional_correspondences, same_object_correspondences
from .render import Renderer, RenderSettings, sample_pose
from .types import ObjectInstance, RenderedView


@dataclass(frozen=True)
class SynthConfig:
    out: str
    categories: tuple[str, ...] = ()
    views: int = 20  # SOCO: images per category; HANDAL: frames per scene; functional: pairs per function
    seed: int = 0
    size: int = 256
    pairs_per_category: int = 40
    cross_pairs_per_group: int = 20
    train_fraction: float = 0.7
    instances: int = 3  # HANDAL / functional: instances per category
    progress: bool = True
    non_square: bool = False  # SOCO: every image its own W x H (long side = size, short side 55-100 %, odd sizes too)

    def resolved_categories(self) -> tuple[str, ...]:
        names = self.categories or tuple(c.name for c in all_categories())
        for name in names:
            get_category(name)
        return tuple(names)


def _render(obj: ObjectInstance, rng: np.random.Generator, settings: RenderSettings, seed: int,
            renderer: Renderer | None = None) -> RenderedView:
    renderer = renderer or Renderer(obj)
    pose = sample_pose(rng, obj, intrinsics=settings.intrinsics)
    return renderer.render(pose, settings, seed=seed)


def _bar(iterable, total: int, desc: str, enabled: bool):
    return tqdm(iterable, total=total, desc=desc, unit="img", disable=not enabled)


# ---- SOCO ------------------------------------------------------------------------------------------------------
def synth_soco(config: SynthConfig) -> dict:
    """Images of ``views`` instances per category, intra/cross/trainsplit pairs, metadata. Returns counts."""
    from .writers.soco import TaxonomyIndex, pair_record, write_image, write_metadata, write_pair

    root = Path(config.out)
    cats = config.resolved_categories()
    rng = np.random.default_rng(config.seed)
    settings = RenderSettings(width=config.size, height=config.size)
    start = time.perf_counter()
    instances = {c: [make_instance(c, i, config.seed) for i in range(config.views)] for c in cats}
    index = TaxonomyIndex(obj for objs in instances.values() for obj in objs)
    mapping: dict = {}
    images: dict[str, list] = {c: [] for c in cats}
    jobs = [(c, i) for c in cats for i in range(config.views)]
    shapes = _soco_shapes(config, len(jobs))
    for (c, i), shape in zip(_bar(jobs, len(jobs), "soco images", config.progress), shapes):
        obj = instances[c][i]
        view_settings = settings if shape is None else RenderSettings(width=shape[0], height=shape[1])
        view = _render(obj, rng, view_settings, seed=config.seed * 100003 + len(mapping))
        images[c].append(write_image(root, index, obj, view, f"{c}_{i:06d}", mapping))
    counts = {"images": len(mapping), "intra": 0, "cross": 0, "train": 0, "test": 0, "skipped_no_shared_concept": 0}

    def emit(folder: str, group: str, category: str, src, trg, key: str) -> None:
        record = pair_record(sum(v for k, v in counts.items() if k in PAIR_KINDS) + 1, group, category, src, trg)
        if record is None:
            counts["skipped_no_shared_concept"] += 1
            return
        write_pair(root, folder, record)
        counts[key] += 1

    for c in cats:
        ordered = list(itertools.permutations(range(len(images[c])), 2))
        for s, t in _sample(ordered, config.pairs_per_category, rng):
            emit(f"intra/{c}", c, c, images[c][s], images[c][t], "intra")
        n_train = max(2, int(round(config.train_fraction * len(images[c]))))
        for split, members in (("train", range(n_train)), ("test", range(n_train, len(images[c])))):
            ordered = list(itertools.permutations(members, 2))
            for s, t in _sample(ordered, config.pairs_per_category, rng):
                emit(f"trainsplits/{split}/{c}", c, c, images[c][s], images[c][t], split)
    for a, b in itertools.combinations(cats, 2):
        shared = {n for n, cs in index.concept_categories.items() if a in cs and b in cs}
        if not shared or get_category(a).family != get_category(b).family:
            continue
        group = f"{a}-{b}"
        ordered = list(itertools.product(range(len(images[a])), range(len(images[b]))))
        for s, t in _sample(ordered, config.cross_pairs_per_group, rng):
            emit(f"cross/{group}", group, group, images[a][s], images[b][t], "cross")
    supercats = {c: get_category(c).supercategory for c in cats}
    families = {c: get_category(c).family for c in cats}
    write_metadata(root, index, mapping, supercats, families, {"generator": "soco synth soco", **asdict(config)})
    counts["seconds"] = round(time.perf_counter() - start, 2)
    return counts


PAIR_KINDS = ("intra", "cross", "train", "test")


def _soco_shapes(config: SynthConfig, n: int) -> list[tuple[int, int] | None]:
    """Per image ``(W, H)`` for ``non_square`` sets (None: the square ``size``). Drawn from their own generator,
    so a square set's images and pairs do not change with this option."""
    if not config.non_square:
        return [None] * n
    rng = np.random.default_rng([config.seed, 14])
    shapes = []
    for _ in range(n):
        short = int(rng.integers(int(round(0.55 * config.size)), config.size))
        shapes.append((config.size, short) if rng.random() < 0.5 else (short, config.size))
    return shapes


def _sample(items: Sequence, k: int, rng: np.random.Generator) -> list:
    if len(items) <= k:
        return list(items)
    return [items[i] for i in sorted(rng.choice(len(items), k, replace=False))]


# ---- HANDAL ----------------------------------------------------------------------------------------------------
def functional_categories(names: Sequence[str]) -> dict[str, list[str]]:
    """function -> categories (among ``names``) that have a functional part for it."""
    table: dict[str, list[str]] = {}
    for name in names:
        for function in make_instance(name, 0).functional_parts:
            table.setdefault(function, []).append(name)
    return table


def synth_handal(config: SynthConfig) -> dict:
    """Per category: ``instances`` objects, one scene each with ``views`` frames, and functional pair annotations
    between scenes of categories that share a function: BOP scenes with ``functional_pairs/`` (full frames) and the
    same pairs in the reference's released layout under ``reference/`` (224 crops, ``selected_annotations.json``)."""
    from .writers.handal import (REFERENCE_MIN_POINTS, convert_bop_to_reference, write_functional_pair,
                                 write_handal_model, write_handal_scene)

    root = Path(config.out)
    cats = [c for c in config.resolved_categories() if make_instance(c, 0).functional_parts]
    if not cats:
        raise ConfigError("none of the chosen categories has functional parts (HANDAL needs tools or containers)")
    rng = np.random.default_rng(config.seed)
    settings = RenderSettings(width=config.size, height=config.size)
    start = time.perf_counter()
    scenes: dict[str, list[tuple[ObjectInstance, list[RenderedView], str]]] = {}
    jobs = [(c, i) for c in cats for i in range(config.instances)]
    for c, i in _bar(jobs, len(jobs), "handal scenes", config.progress):
        obj = make_instance(c, i, config.seed)
        renderer = Renderer(obj)
        views = [_render(obj, rng, settings, config.seed * 7919 + i * 1000 + f, renderer) for f in range(config.views)]
        write_handal_model(root, c, i + 1, obj)
        scene_dir = write_handal_scene(root, c, i, i + 1, views)
        scenes.setdefault(c, []).append((obj, views, str(scene_dir.relative_to(root))))
    pairs = 0
    for function, members in functional_categories(cats).items():
        for ca, cb in itertools.combinations_with_replacement(members, 2):
            for group, ((oa, va, da), (ob, vb, db)) in enumerate(_distinct_pairs(scenes[ca], scenes[cb], ca == cb)):
                alignment = align_functional_parts(oa, ob, function, seed=config.seed)
                for trial in range(min(2, config.views)):
                    fa, fb = trial % len(va), (trial + 1) % len(vb)
                    corr = functional_correspondences(va[fa], oa, vb[fb], ob, alignment, max_points=500, rng=rng)
                    if len(corr) < REFERENCE_MIN_POINTS:  # the released scripts sample 10 points per trial
                        continue
                    write_functional_pair(root, function, ca, f"{da}/rgb/{fa:06d}.jpg", cb, f"{db}/rgb/{fb:06d}.jpg",
                                          corr, group=group, trial=trial)
                    pairs += 1
    # the same annotations in the reference's released layout (root/reference/), cropped from the written frames
    reference = convert_bop_to_reference(root) if pairs else {"trials": 0}
    return {"scenes": sum(len(v) for v in scenes.values()), "frames": sum(len(v[1]) for s in scenes.values() for v in s),
            "functional_pairs": pairs, "reference_trials": reference["trials"],
            "seconds": round(time.perf_counter() - start, 2)}


def _distinct_pairs(a: list, b: list, same: bool) -> list:
    if same:
        return [(a[i], a[j]) for i, j in itertools.combinations(range(len(a)), 2)][:2]
    return [(x, y) for x, y in zip(a, b)][:2]


# ---- functional training pairs ---------------------------------------------------------------------------------
def synth_functional(config: SynthConfig) -> dict:
    """Training pairs for the functional head: for each function, ``views`` cross-instance pairs (functional
    correspondences after 3D part alignment) and as many same-instance multi-view pairs (true correspondences).
    The first ``train_fraction`` of the categories of each function are 'train', the rest 'test' (held out)."""
    from .writers.training import finalize_training_index, write_training_pair

    root = Path(config.out)
    cats = [c for c in config.resolved_categories() if make_instance(c, 0).functional_parts]
    table = functional_categories(cats)
    rng = np.random.default_rng(config.seed)
    settings = RenderSettings(width=config.size, height=config.size)
    start = time.perf_counter()
    objects = {c: [make_instance(c, i, config.seed) for i in range(config.instances)] for c in cats}
    renderers = {o.instance_id: Renderer(o) for objs in objects.values() for o in objs}
    counts = {"multiview": 0, "functional": 0}
    jobs = [(f, k) for f, members in sorted(table.items()) for k in range(config.views)]
    for function, k in _bar(jobs, len(jobs), "functional pairs", config.progress):
        members = table[function]
        n_train = max(1, int(round(config.train_fraction * len(members)))) if len(members) > 1 else 1
        split = "train" if k < int(round(config.train_fraction * config.views)) else "test"
        pool = members[:n_train] if split == "train" else (members[n_train:] or members)
        ca, cb = rng.choice(pool), rng.choice(pool)
        oa, ob = objects[ca][rng.integers(len(objects[ca]))], objects[cb][rng.integers(len(objects[cb]))]
        seed_a, seed_b = int(rng.integers(1 << 30)), int(rng.integers(1 << 30))
        va = _render(oa, rng, settings, seed_a, renderers[oa.instance_id])
        vb = _render(ob, rng, settings, seed_b, renderers[ob.instance_id])
        if oa.instance_id != ob.instance_id:
            alignment = align_functional_parts(oa, ob, function, seed=config.seed)
            corr = functional_correspondences(va, oa, vb, ob, alignment, max_points=1000, rng=rng)
            write_training_pair(root, split, f"{function}_{k:05d}_f", "functional", function, va, oa, vb, ob, corr,
                                alignment.transform)
            counts["functional"] += 1
        vb2 = _render(oa, rng, settings, seed_b + 1, renderers[oa.instance_id])
        corr = same_object_correspondences(va, vb2, max_points=1000, rng=rng)
        write_training_pair(root, split, f"{function}_{k:05d}_m", "multiview", function, va, oa, vb2, oa, corr)
        counts["multiview"] += 1
    finalize_training_index(root)
    counts["seconds"] = round(time.perf_counter() - start, 2)
    return counts


SYNTHESISERS: dict[str, Callable[[SynthConfig], dict]] = {"soco": synth_soco, "handal": synth_handal,
                                                          "functional": synth_functional}


def contact_sheet(config: SynthConfig, per_category: int = 2) -> dict:
    """A PNG of rendered instances of every chosen category, visible keypoints green, hidden ones red."""
    from PIL import Image, ImageDraw

    from ..viz import contact_sheet as grid

    rng = np.random.default_rng(config.seed)
    settings = RenderSettings(width=config.size, height=config.size)
    tiles, labels = [], []
    names = config.resolved_categories()
    for name in names:
        for i in range(per_category):
            obj = make_instance(name, i, config.seed)
            view = _render(obj, rng, settings, seed=config.seed + i + 7)
            image = Image.fromarray(view.rgb)
            draw = ImageDraw.Draw(image)
            for (x, y), visible in zip(view.keypoints_xy, view.keypoints_visible):
                color = (0, 255, 0) if visible else (255, 0, 0)
                draw.ellipse([x - 2, y - 2, x + 2, y + 2], outline=color)
            tiles.append(np.asarray(image))
            labels.append(f"{get_category(name).family}/{obj.instance_id}")
    path = Path(config.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid(tiles, labels, columns=6, tile=160).save(path, optimize=True)
    return {"tiles": len(tiles), "path": str(path)}


SYNTHESISERS["sheet"] = contact_sheet
