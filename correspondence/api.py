"""The Python API in one place: build a :class:`Matcher` once, call it per frame (or use :func:`match`)."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from .backbones import LoadedBackbone, create_backbone
from .coords import Convention
from .device import resolve_device
from .errors import ConfigError
from .features import ExtractionSettings, FeatureExtractor
from .frame_graph import FrameGraph, can_capture_frame
from .io import KeypointSet, load_image, load_keypoints, load_mask, parse_keypoints
from .geometry2d import GeometrySettings
from .keypoint_matching import (DemoQuery, MatchResult, MatchSettings, match_keypoints, match_prepared, prepare_demo,
                                searched_refine_and_verify)
from .preprocessing import PadPolicy, PreprocessSettings, SizePolicy, to_rgb_array
from .runtimes import RuntimeSpec, create_runtime, exported_backbone, exported_metadata
from .runtimes.precision import resolve_precision

ImageLike = str | Path | Image.Image | np.ndarray


def as_image(image: ImageLike) -> Image.Image | np.ndarray:
    return load_image(image) if isinstance(image, (str, Path)) else image


def as_mask(mask: str | Path | np.ndarray | None) -> np.ndarray | None:
    if mask is None:
        return None
    return load_mask(mask) if isinstance(mask, (str, Path)) else np.asarray(mask) > 0


def as_keypoints(keypoints: str | Path | KeypointSet | dict | list) -> KeypointSet:
    if isinstance(keypoints, KeypointSet):
        return keypoints
    if isinstance(keypoints, (str, Path)):
        return load_keypoints(keypoints)
    return parse_keypoints(keypoints)


@dataclass
class Matcher:
    """A backbone + extraction settings + match settings, reused across calls (features are cached)."""

    extractor: FeatureExtractor
    settings: MatchSettings
    _frame_graphs: dict = field(default_factory=dict, repr=False, compare=False)
    _record: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def create(cls, backbone: str | LoadedBackbone = "auto", *, weights: str | Path | None = None,
               random_weights: bool = False, device: str = "cpu", dtype: str = "auto",
               runtime: RuntimeSpec | str | Mapping | None = None,
               extraction: ExtractionSettings | Mapping | None = None, matching: MatchSettings | Mapping | None = None,
               allow_download: bool = True, cache_size: int = 64, **options: Any) -> "Matcher":
        """A matcher from three groups of settings, each an object or a mapping of its fields:

        - ``dtype``: ``auto`` (default: bf16 on a CPU with native bf16 once verified on these weights, else
          float32; see :mod:`correspondence.runtimes.precision`), or an explicit float32 | float16 | bfloat16.

        - ``runtime`` (:class:`RuntimeSpec`): ``"torch"`` (default) or ``name`` (torch | onnxruntime | tensorrt),
          ``model`` (.onnx / .engine), ``provider``, ``compile``, ``cuda_graphs`` (capture the backbone as a CUDA
          graph at creation, preprocess on the GPU; CUDA only), ``fp16``, ``threads``, ``allow_unverified``. An
          exported model fixes the backbone and size: ``backbone="auto"`` and no size take them from its metadata.
        - ``extraction``: an :class:`ExtractionSettings`, or ``size`` (default: the backbone's), ``pad``,
          ``size_policy``, ``convention``.
        - ``matching``: a :class:`MatchSettings`, or ``protocol`` (``default`` precise transfer | ``soco`` the SOCO
          reference), ``method``, ``window``, ``beta``, ``temperature``, ``refine``, ``refinement``, ``geometry``
          (none | affine | homography | fundamental | auto), ``geometry_threshold``, ``local_features`` (sift | orb |
          akaze | none: fused into same-object geometry), ``photometric`` (True by default: ECC refinement of a
          verified homography / affine map, :mod:`correspondence.photometric`; False, a dict or a
          :class:`PhotometricSettings`), ``search`` (none | rotation | rotation-scale | auto: the
          coarse match's rotation / scale search, :mod:`correspondence.transform_search`); see
          docs/precise_transfer.md.

        The fields of ``extraction`` and ``matching`` may also be given directly as keyword ``options``
        (``Matcher.create("daisy", size=224, geometry="auto")``). ``cache_size``: images whose features are kept (a
        live stream wants 2: the demo and the current frame)."""
        extraction_options, matching_options = _split_options(options)
        spec = RuntimeSpec.coerce(runtime)
        exported = exported_metadata(spec)
        if isinstance(backbone, LoadedBackbone):
            loaded = backbone
        elif exported is not None:
            exported.check(backbone=None if backbone == "auto" else backbone, source=str(spec.model))
            loaded = exported_backbone(exported, spec.model, spec.name)
        else:
            loaded = create_backbone(backbone, weights=weights, random_init=random_weights,
                                     allow_download=allow_download)
        default_size = exported.size if exported is not None else loaded.spec.preprocessing.default_size
        settings = _extraction_settings(extraction, extraction_options, default_size, dtype)
        settings, precision = resolve_precision(settings, loaded, resolve_device(device), spec.name)
        runtime = create_runtime(spec, loaded, device=device, dtype=settings.dtype)
        return cls(FeatureExtractor(loaded, settings, device=device, runtime=runtime, cache_size=cache_size,
                                    precision=precision),
                   _match_settings(matching, matching_options))

    def __call__(self, demo: ImageLike, keypoints: Any, live: ImageLike, live_mask: Any = None,
                 demo_mask: Any = None) -> MatchResult:
        return match_keypoints(as_image(demo), as_keypoints(keypoints), as_image(live), self.extractor,
                               live_mask=as_mask(live_mask), demo_mask=as_mask(demo_mask), settings=self.settings)

    def prepare(self, demo: ImageLike, keypoints: Any, demo_mask: Any = None) -> DemoQuery:
        """Encode the demo and its keypoints once (a robot shows one demo and then streams live frames)."""
        image = as_image(demo)
        fmap = self.extractor.extract_batch([image], cache=False)[0]
        return prepare_demo(fmap, as_keypoints(keypoints), as_mask(demo_mask), self.settings, demo_image=image,
                            extractor=self.extractor)

    def match_live(self, demo: DemoQuery, live: ImageLike, live_mask: Any = None) -> MatchResult:
        """One live frame against a prepared demo: the frame is encoded (never hashed or cached) and matched.

        With a CUDA-graph runtime the whole frame (upload, preprocessing, backbone, matching; a live mask as the
        cells it allows) replays as one captured graph per demo and camera resolution
        (:mod:`correspondence.frame_graph`)."""
        start = time.perf_counter()
        live, mask = as_image(live), as_mask(live_mask)
        if not self._record:  # the settings are frozen: describe them once, not per frame
            self._record.update(self.extractor.describe(), matching=asdict(self.settings))
        record = {**self._record, "live_mask": mask is not None, "demo_mask": demo.masked}
        if can_capture_frame(self.extractor):
            rgb = to_rgb_array(live)
            graph = self._frame_graph(demo, rgb.shape[:2])
            coarse = graph(rgb, mask)
            t_graph = time.perf_counter() - start
            # The template holds this frame's features until the next replay: the search may read them.
            matches, timings = searched_refine_and_verify(demo, graph.live_template, coarse, rgb, mask, self.settings)
            return MatchResult(tuple(matches), {**record, "frame_graph": True}, {"frame_graph": t_graph, **timings},
                               matches.geometry, matches.search)
        fmap = self.extractor.extract_batch([live], cache=False)[0]
        t_features = time.perf_counter() - start
        matches, timings = match_prepared(demo, fmap, mask, self.settings, live_image=live)
        return MatchResult(tuple(matches), record, {"features": t_features, **timings}, matches.geometry,
                           matches.search)

    def _frame_graph(self, demo: DemoQuery, frame_hw: tuple[int, int]) -> FrameGraph:
        key = (id(demo), tuple(frame_hw))
        graph = self._frame_graphs.get(key)
        if graph is None or graph.query is not demo:
            while len(self._frame_graphs) >= 4:  # one per demo and resolution in use; old ones free their memory
                self._frame_graphs.pop(next(iter(self._frame_graphs)))
            graph = self._frame_graphs[key] = FrameGraph(self.extractor, demo, self.settings, frame_hw)
        return graph


def match(demo: ImageLike, keypoints: Any, live: ImageLike, live_mask: Any = None, backbone: str = "auto",
          **options: Any) -> MatchResult:
    """One call: where are the demo's keypoints in the live image? (See :meth:`Matcher.create` for options.)"""
    return Matcher.create(backbone, **options)(demo, keypoints, live, live_mask=live_mask)


EXTRACTION_FIELDS = ("size", "pad", "size_policy", "convention")
MATCHING_FIELDS = ("protocol", "method", "window", "beta", "temperature", "refine", "refinement", "geometry",
                   "geometry_threshold", "local_features", "photometric", "search")


def _split_options(options: Mapping[str, Any]) -> tuple[dict, dict]:
    unknown = sorted(set(options) - set(EXTRACTION_FIELDS) - set(MATCHING_FIELDS))
    if unknown:
        raise ConfigError(f"unknown Matcher option(s) {unknown}; extraction: {', '.join(EXTRACTION_FIELDS)}; "
                          f"matching: {', '.join(MATCHING_FIELDS)}")
    return ({k: v for k, v in options.items() if k in EXTRACTION_FIELDS},
            {k: v for k, v in options.items() if k in MATCHING_FIELDS})


def _group(value: Any, options: dict, kind: type, fields: Sequence[str], what: str) -> dict | None:
    """``value`` (a settings object, a mapping or None) and loose ``options`` as one mapping; None for an object."""
    if isinstance(value, kind):
        if options:
            raise ConfigError(f"give {what} either as a {kind.__name__} or as options, not both "
                              f"(got both and {sorted(options)})")
        return None
    merged = dict(value or {})
    unknown = sorted(set(merged) - set(fields))
    if unknown:
        raise ConfigError(f"unknown {what} field(s) {unknown}; known: {', '.join(fields)}")
    merged.update(options)
    return merged


def _extraction_settings(value, options: dict, default_size: int, dtype: str) -> ExtractionSettings:
    merged = _group(value, options, ExtractionSettings, EXTRACTION_FIELDS, "extraction")
    if merged is None:
        return value
    preprocess = PreprocessSettings(pad=merged.get("pad", PadPolicy.PAD_TOPLEFT_WHITE.value),
                                    size=merged.get("size") or default_size,
                                    size_policy=merged.get("size_policy", SizePolicy.NEAREST_MULTIPLE.value))
    return ExtractionSettings(preprocess, convention=merged.get("convention", Convention.PATCH_CENTER.value),
                              dtype=dtype)


def _match_settings(value, options: dict) -> MatchSettings:
    merged = _group(value, options, MatchSettings, MATCHING_FIELDS, "matching")
    if merged is None:
        return value
    geometry, threshold = merged.pop("geometry", None), merged.pop("geometry_threshold", None)
    local, photometric = merged.pop("local_features", None), merged.pop("photometric", None)
    if not isinstance(geometry, GeometrySettings) and (geometry is not None or threshold is not None or local
                                                       or photometric is not None):
        geometry = GeometrySettings(model=geometry or "none", threshold_px=threshold,
                                    **({"local_features": local} if local else {}),
                                    **({"photometric": photometric} if photometric is not None else {}))
    protocol = merged.pop("protocol", "default")
    return MatchSettings.protocol(protocol, geometry=geometry, **merged)
