"""Protocol settings of the SOCO benchmark, as named, recorded settings.

``soco-798``: pad-topleft-white, 800 px -> nearest multiple of the patch (798 for /14, a 57 x 57 grid), raw
last-block tokens, argmax. ``soco-grid60``: the same with a fixed 60-patch grid (840 px for /14), which is what the
paper's DINOv2 table matches.

Both presets reproduce the released evaluation (GenIntel/SOCO ``scripts/evaluate_dinov2.py`` and GenIntel/OmniProbe
``eval_correspondence_soco.py`` / ``eval_correspondence_geometric_soco.py`` / ``datasets/soco.py``) prediction for
prediction: the feature maps are L2-normalised per cell *before* the query is sampled, the sampled query is used as
it is (not re-normalised), coordinates use the reference's integer truncation and float32 arithmetic, SOC-geo keeps
the keypoints with at least two candidates (the paper's SOC-geo) and pools keypoints per category, features are
compared in fp32. Every earlier variant stays available as a named setting (see ``docs/soco.md``):

==================  ===========================  =========================================================
setting             paper protocols (default)    alternatives
==================  ===========================  =========================================================
``normalise``       ``before-sampling``          ``after-sampling`` (sample the raw map, normalise the query)
``query``           ``as-sampled``               ``unit`` (re-normalise the sampled query)
``arithmetic``      ``reference`` (int32/fp32)   ``float64`` (exact geometry in float64, any convention)
``geo_min_cand.``   ``2``                        ``1`` (single-candidate keypoints count: free hits)
``geo_candidates``  ``targets`` (keypoints)      ``patches`` (unique candidate patches)
``geo_reduction``   ``keypoint-category-mean``   any reduction, or ``run`` (the run's ``reduction``)
``storage``         ``float32``                  ``float16`` (half the memory; never changes the grid)
==================  ===========================  =========================================================
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from ...backbones.contract import OutputKind
from ...coords import Convention
from ...errors import ConfigError
from ...features import ExtractionSettings
from ...preprocessing import PadPolicy, PreprocessSettings, SizePolicy

TASKS = ("cc", "soc", "cross", "geo")
REDUCTIONS = ("pair-category-mean", "keypoint-category-mean", "pooled")
ALPHAS = (0.1, 0.05, 0.02)
NORMALISE = ("before-sampling", "after-sampling")
QUERY = ("as-sampled", "unit")
ARITHMETIC = ("reference", "float64")
GEO_CANDIDATES = ("targets", "patches")
STORAGE = ("float32", "float16")


@dataclass(frozen=True)
class ProtocolSettings:
    size: int = 800
    size_policy: str = SizePolicy.NEAREST_MULTIPLE.value
    pad: str = PadPolicy.PAD_TOPLEFT_WHITE.value
    kind: str = OutputKind.LAST_RAW.value
    convention: str = Convention.SOCO.value
    method: str = "argmax"  # argmax | soft-argmax
    window: int = 7  # soft-argmax half-width (15 x 15 cells); 0 = the whole map, < 0 = a Gaussian of sigma -window
    beta: float = 0.02  # soft-argmax temperature
    alphas: tuple[float, ...] = ALPHAS
    tasks: tuple[str, ...] = TASKS
    reduction: str = "pair-category-mean"
    normalise: str = "before-sampling"
    query: str = "as-sampled"
    arithmetic: str = "reference"
    geo_min_candidates: int = 2  # the paper's SOC-geo: pairs with >= 2 candidates (1 = single-candidate too)
    geo_candidates: str = "targets"  # what is counted and checked: target keypoints of the concept, or patches
    geo_reduction: str = "keypoint-category-mean"  # the reference pools keypoints per category; "run" = reduction
    storage: str = "float32"  # feature maps held in memory / on disk
    name: str = "soco-798"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in ("argmax", "soft-argmax"):
            raise ConfigError(f"method must be argmax or soft-argmax, got {self.method!r}")
        unknown = sorted(set(self.tasks) - set(TASKS))
        if unknown:
            raise ConfigError(f"unknown tasks {unknown}; choose from {TASKS}")
        if self.reduction not in REDUCTIONS:
            raise ConfigError(f"reduction must be one of {REDUCTIONS}, got {self.reduction!r}")
        if self.geo_reduction not in REDUCTIONS + ("run",):
            raise ConfigError(f"geo_reduction must be one of {REDUCTIONS + ('run',)}, got {self.geo_reduction!r}")
        if not self.alphas or any(a <= 0 for a in self.alphas):
            raise ConfigError(f"alphas must be positive, got {self.alphas}")
        if self.beta <= 0:
            raise ConfigError(f"soft-argmax beta must be > 0, got {self.beta}")
        for name, allowed in (("normalise", NORMALISE), ("query", QUERY), ("arithmetic", ARITHMETIC),
                              ("geo_candidates", GEO_CANDIDATES), ("storage", STORAGE)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.geo_min_candidates < 1:
            raise ConfigError(f"geo_min_candidates must be >= 1, got {self.geo_min_candidates}")
        if self.arithmetic == "reference" and (Convention(self.convention) is not Convention.SOCO
                                               or PadPolicy(self.pad) is not PadPolicy.PAD_TOPLEFT_WHITE):
            raise ConfigError("the reference arithmetic is defined for the soco convention with pad-topleft-white "
                              f"(got convention {self.convention!r}, pad {self.pad!r}); use arithmetic='float64'")

    def reduction_for(self, task: str) -> str:
        """SOC-geo is reduced as the reference does (``geo_reduction``); every other task by ``reduction``."""
        if task == "geo" and self.geo_reduction != "run":
            return self.geo_reduction
        return self.reduction

    def extraction(self) -> ExtractionSettings:
        return ExtractionSettings(PreprocessSettings(pad=self.pad, size=self.size, size_policy=self.size_policy),
                                  kind=self.kind, convention=self.convention)

    def as_dict(self) -> dict:
        """The settings, and where they leave the paper protocol (``departures``, empty for a paper run)."""
        return {**asdict(self), "departures": departures(self)}


PRESETS = {
    "soco-798": ProtocolSettings(),
    "soco-grid60": ProtocolSettings(size=60, size_policy=SizePolicy.FIXED_GRID.value, name="soco-grid60"),
}

# Every earlier behaviour, by name (``--variant``): each differs from the paper protocols in one point.
VARIANTS = {
    "sample-then-normalise": {"normalise": "after-sampling"},
    "unit-query": {"query": "unit"},
    "float64-geometry": {"arithmetic": "float64"},
    "geo-single-candidate": {"geo_min_candidates": 1},
    "geo-patch-candidates": {"geo_candidates": "patches"},
    "geo-run-reduction": {"geo_reduction": "run"},
    "fp16-storage": {"storage": "float16"},
    # what this project computed before it reproduced the released code (issue 14)
    "legacy": {"normalise": "after-sampling", "arithmetic": "float64", "geo_min_candidates": 1,
               "geo_candidates": "patches", "geo_reduction": "run", "storage": "float16"},
}


# What a paper protocol fixes: a run that differs from its preset in any of these is a variant, whatever spelled it
# (``--variant``, ``--geo-min-candidates``, ``--storage``, ``--convention`` or a ``ProtocolSettings`` field).
PAPER_FIELDS = ("size", "size_policy", "pad", "kind", "convention", "normalise", "query", "arithmetic",
                "geo_min_candidates", "geo_candidates", "geo_reduction", "storage")


def departures(settings: ProtocolSettings) -> list[str]:
    """Every point where ``settings`` leave the paper protocol they are named after (``[]`` for a paper run):
    the variant's name where one sets exactly that value (``geo-single-candidate``), else ``field=value (paper
    value)``; soft-argmax with another temperature or window than the paper's; a name that is no paper protocol."""
    paper = PRESETS.get(settings.name)
    if paper is None:
        return [f"protocol {settings.name!r} (not a paper protocol: {', '.join(PRESETS)})"]
    out = []
    for name in PAPER_FIELDS:
        value, want = getattr(settings, name), getattr(paper, name)
        if value != want:
            named = [v for v, changes in VARIANTS.items() if changes == {name: value}]
            out.append(named[0] if named else f"{name}={value!r} (paper {want!r})")
    if settings.method == "soft-argmax" and (settings.beta, settings.window) != (paper.beta, paper.window):
        out.append(f"soft-argmax beta={settings.beta:g} window={settings.window} (paper {paper.beta:g}, "
                   f"{paper.window})")
    return out


def preset(name: str, **overrides) -> ProtocolSettings:
    if name not in PRESETS:
        raise ConfigError(f"unknown protocol {name!r}; choose from {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)


def variant(settings: ProtocolSettings, names: str | list[str] | tuple[str, ...]) -> ProtocolSettings:
    """``settings`` with the named variants applied (comma-separated or a list), recorded in ``extra``."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    changes: dict = {}
    for name in names:
        if name not in VARIANTS:
            raise ConfigError(f"unknown variant {name!r}; choose from {sorted(VARIANTS)}")
        changes.update(VARIANTS[name])
    if not names:
        return settings
    return replace(settings, **changes, extra={**settings.extra, "variants": list(names)})
