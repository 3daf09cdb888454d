"""The SOCO feature store's pipelined prefetch: the next chunk decodes while the current one is encoded, and the
disk cache is written in the background. Checked by what it gives (the same maps as encoding one image at a time,
the same maps and numbers cold and warm), by how long it takes (decoding and encoding overlap), and by errors
(a failed disk write is raised, not lost)."""
from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PIL import Image

from correspondence.backbones import create_backbone
from correspondence.benchmarks.soco import ProtocolSettings, SocoPairs
from correspondence.benchmarks.soco.evaluator import evaluate
from correspondence.benchmarks.soco.features_store import FeatureStore
from correspondence.features import FeatureExtractor

SETTINGS = ProtocolSettings(size=112)


@pytest.fixture(scope="module")
def soco_root(tmp_path_factory) -> Path:
    from correspondence.world.synth import SynthConfig, synth_soco
    root = tmp_path_factory.mktemp("soco_prefetch")
    synth_soco(SynthConfig(out=str(root), categories=("car", "mug"), views=5, size=96, pairs_per_category=3,
                           cross_pairs_per_group=2, seed=4, progress=False, non_square=True))
    return root


@pytest.fixture(scope="module")
def backbone():
    return create_backbone("test_vit_tiny")


def extractor(backbone, batch_size: int = 3) -> FeatureExtractor:
    return FeatureExtractor(backbone, SETTINGS.extraction(), batch_size=batch_size, cache_size=0)


def unique_views(root: Path, count: int | None = None) -> list:
    views = {}
    for pair in SocoPairs(root, "intra"):
        for view in (pair.source, pair.target):
            views.setdefault(str(view.image_path), view)
    return list(views.values())[:count]


def prefetched_maps(store: FeatureStore, views: list) -> list:
    store.encode_distributed(views, progress=False)
    return [store(view) for view in views]


@pytest.mark.parametrize("batch_size", [2, 3])
def test_pipelined_maps_equal_one_image_at_a_time(soco_root, backbone, batch_size):
    views = unique_views(soco_root, 7)  # odd: the last chunk is partial whatever the batch size
    assert len(views) == 7
    store = FeatureStore(extractor(backbone, batch_size))
    maps = prefetched_maps(store, views)
    alone = extractor(backbone, batch_size=1)
    for view, fmap in zip(views, maps):
        expected = alone(view.image)
        assert torch.equal(fmap.features, expected.features)
        assert fmap.geometry == expected.geometry
    assert store.stats.encoded == 7 and store.stats.hits == 0 and store.stats.disk_hits == 0


@dataclass(eq=False)
class SlowView:
    """A view whose image takes ``delay`` seconds to decode (a large JPEG, a slow disk)."""
    image_path: Path
    size: tuple[int, int] = (64, 48)
    delay: float = 0.2

    def decode(self) -> Image.Image:
        time.sleep(self.delay)
        return Image.new("RGB", self.size, (int(self.image_path.stem[1:]) * 20 % 256, 90, 30))

    @property
    def image(self) -> Image.Image:
        return self.decode()


class SlowExtractor(FeatureExtractor):
    """The network stand-in: every batch takes ``delay`` seconds more (a GPU busy with it)."""

    delay = 0.2

    def extract_batch(self, images, cache: bool = True):
        time.sleep(self.delay)
        return super().extract_batch(images, cache=cache)


def test_decoding_overlaps_encoding(backbone, tmp_path):
    chunks, batch = 8, 2
    views = [SlowView(tmp_path / f"i{i}.jpg") for i in range(chunks * batch)]
    store = FeatureStore(SlowExtractor(backbone, SETTINGS.extraction(), batch_size=batch, cache_size=0))
    start = time.perf_counter()
    store.encode_distributed(views, progress=False)
    elapsed = time.perf_counter() - start
    # decoding run in turn with encoding would add every chunk's decode to the encoding's own (measured) time; overlapped,
    # only the first chunk's. The bound rests on the measured encode time, so a loaded machine, which slows the
    # network stand-in's real work, does not fail it
    decoding = chunks * SlowView.delay  # a chunk's images decode in parallel
    encoding = store.stats.encode_seconds - store.stats.decode_wait_seconds  # the network's own time
    assert elapsed < encoding + 0.5 * decoding, (elapsed, encoding, decoding)
    assert store.stats.encoded == len(views)
    assert store.stats.encode_seconds <= elapsed  # wall time: decoding that overlapped is not counted twice
    assert store.stats.decode_wait_seconds < 0.5 * chunks * SlowView.delay  # only the first chunk is waited for
    assert store.stats.write_wait_seconds == 0.0  # no disk cache


def test_disk_cache_cold_then_warm_gives_the_same_maps_and_numbers(soco_root, backbone, tmp_path):
    pairs = list(SocoPairs(soco_root, "intra"))
    views = [view for pair in pairs for view in (pair.source, pair.target)]
    images = len({str(view.image_path) for view in views})
    cold = FeatureStore(extractor(backbone), tmp_path / "cache")
    cold_maps = prefetched_maps(cold, views)
    files = sorted((tmp_path / "cache").rglob("*"))
    saved = [f for f in files if f.suffix == ".pt"]
    assert len(saved) == images and not [f for f in files if f.name.endswith(".tmp")]
    map_bytes = cold_maps[0].features.numel() * cold_maps[0].features.element_size()
    assert all(f.stat().st_size < 2 * map_bytes for f in saved)  # one map per file, not its whole batch
    assert cold.stats.encoded == images and cold.stats.disk_hits == 0

    warm = FeatureStore(extractor(backbone), tmp_path / "cache")
    warm_maps = prefetched_maps(warm, views)
    assert warm.stats.encoded == 0 and warm.stats.disk_hits == images
    for a, b in zip(cold_maps, warm_maps):
        assert torch.equal(a.features, b.features) and a.geometry == b.geometry
    cold_run = evaluate(pairs, cold, SETTINGS, progress=False)
    warm_run = evaluate(pairs, warm, SETTINGS, progress=False)
    assert cold_run.records and cold_run.records == warm_run.records


def test_a_cache_folder_that_cannot_be_made_is_an_error(soco_root, backbone, tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    store = FeatureStore(extractor(backbone), tmp_path / "a_file" / "cache")
    with pytest.raises(OSError):
        store.encode_distributed(unique_views(soco_root, 5), progress=False)


def test_a_failed_last_write_is_raised(soco_root, backbone, tmp_path, monkeypatch):
    views = unique_views(soco_root, 5)
    real_save, calls = torch.save, []

    def save(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == len(views):  # the last map: written after the loop has encoded everything
            raise OSError("disk full")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    store = FeatureStore(extractor(backbone), tmp_path / "cache")
    with pytest.raises(OSError, match="disk full"):
        store.encode_distributed(views, progress=False)
    assert len(calls) == len(views)


@dataclass(eq=False)
class CachingSlowView(SlowView):
    """As the dataset's views: the image is a cached property (one lock for every view before Python 3.12)."""

    @functools.cached_property
    def image(self) -> Image.Image:
        return self.decode()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two host threads to decode in parallel")
def test_a_chunk_decodes_its_images_in_parallel(backbone, tmp_path):
    views = [CachingSlowView(tmp_path / f"i{i}.jpg", delay=0.3) for i in range(2)]
    store = FeatureStore(extractor(backbone, batch_size=2))
    maps = prefetched_maps(store, views)
    assert store.stats.decode_wait_seconds < 0.5  # one image after the other: 0.6 s
    alone = extractor(backbone, batch_size=1)
    assert all(torch.equal(m.features, alone(v.decode()).features) for m, v in zip(maps, views))
