"""Protocol settings of the SOCO benchmark, as named, recorded settings.

``soco-798``: pad-topleft-white, 800 px -> nearest multiple of the patch (798 for /14, a 57 x 57 grid), raw
last-block tokens, the reference's coordinate convention, argmax. ``soco-grid60``: the same with a fixed 60-patch
grid (840 px for /14), which is what the paper's DINOv2 table matches.
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


@dataclass(frozen=True)
class ProtocolSettings:
    size: int = 800
    size_policy: str = SizePolicy.NEAREST_MULTIPLE.value
    pad: str = PadPolicy.PAD_TOPLEFT_WHITE.value
    kind: str = OutputKind.LAST_RAW.value
    convention: str = Convention.SOCO.value
    method: str = "argmax"  # argmax | soft-argmax
    window: int = 7
    beta: float = 0.02
    alphas: tuple[float, ...] = ALPHAS
    tasks: tuple[str, ...] = TASKS
    reduction: str = "pair-category-mean"
    geo_min_candidates: int = 1  # 2 = the reference's only_multi_candidate_eval (chance then ~ 1/#candidates)
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
        if not self.alphas or any(a <= 0 for a in self.alphas):
            raise ConfigError(f"alphas must be positive, got {self.alphas}")

    def extraction(self) -> ExtractionSettings:
        return ExtractionSettings(PreprocessSettings(pad=self.pad, size=self.size, size_policy=self.size_policy),
                                  kind=self.kind, convention=self.convention)

    def as_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "soco-798": ProtocolSettings(),
    "soco-grid60": ProtocolSettings(size=60, size_policy=SizePolicy.FIXED_GRID.value, name="soco-grid60"),
}


def preset(name: str, **overrides) -> ProtocolSettings:
    if name not in PRESETS:
        raise ConfigError(f"unknown protocol {name!r}; choose from {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)
