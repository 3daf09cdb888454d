"""Backbone registry: a name -> architecture, pretrained source, preprocessing defaults and contract.

``create_backbone("dinov2_vits14")`` resolves weights the real way (see :mod:`.weights`); ``random_init=True``
gives the same architecture with seeded random weights (for tests, latency and export checks).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..errors import ConfigError, WeightsNotFoundError
from .contract import IDENTITY_NORM, IMAGENET, BackboneContract, DenseBackbone, OutputKind, Preprocessing
from .weights import PretrainedSource, load_state_dict, resolve_weights, weights_hash

DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2/{model}/{file}"
RANDOM_SEED = 0


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    family: str
    description: str
    contract: BackboneContract
    preprocessing: Preprocessing
    build: Callable[[], DenseBackbone]
    source: PretrainedSource | None  # None: needs no weights (weight-free or test model)

    @property
    def needs_weights(self) -> bool:
        return self.source is not None


@dataclass(frozen=True)
class WeightsInfo:
    """Which weights a backbone runs with; recorded in every result."""

    kind: str  # "pretrained" | "random" | "weight-free"
    path: str | None = None
    sha256: str | None = None


@dataclass
class LoadedBackbone:
    spec: BackboneSpec
    module: DenseBackbone
    weights: WeightsInfo

    @property
    def identity(self) -> str:
        return f"{self.spec.name}:{self.weights.kind}:{self.weights.sha256 or '-'}"

    def describe(self) -> dict:
        contract = self.spec.contract
        return {"name": self.spec.name, "family": self.spec.family, "weights": self.weights.kind,
                "weights_path": self.weights.path, "weights_sha256": self.weights.sha256,
                "patch_size": contract.patch_size, "feature_dim": contract.feature_dim,
                "num_blocks": contract.num_blocks}


_REGISTRY: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    if spec.name in _REGISTRY:
        raise ConfigError(f"backbone {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def list_backbones() -> list[BackboneSpec]:
    return list(_REGISTRY.values())


def get_spec(name: str) -> BackboneSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown backbone {name!r}; known: {', '.join(sorted(_REGISTRY))} (or 'auto')") from None


# ---- builders ---------------------------------------------------------------------------------------------------
def _timm_vit(arch: str, contract: BackboneContract, registers: bool = False, **kwargs) -> Callable[[], DenseBackbone]:
    """``registers``: the DINOv2 register models resize their positional embedding differently (see vit.py)."""
    def build() -> DenseBackbone:
        import timm

        from .vit import PLAIN_INTERPOLATION, REGISTER_INTERPOLATION, DinoViT
        model = timm.create_model(arch, pretrained=False, num_classes=0, dynamic_img_size=True, **kwargs)
        return DinoViT(model, contract, REGISTER_INTERPOLATION if registers else PLAIN_INTERPOLATION)
    return build


def _timm_dinov3(arch: str, contract: BackboneContract) -> Callable[[], DenseBackbone]:
    def build() -> DenseBackbone:
        import timm

        from .timm_generic import TimmIntermediatesViT
        return TimmIntermediatesViT(timm.create_model(arch, pretrained=False, num_classes=0), contract)
    return build


def _tiny_vit(patch: int = 14, dim: int = 64, depth: int = 4, heads: int = 4) -> Callable[[], DenseBackbone]:
    def build() -> DenseBackbone:
        from timm.models.vision_transformer import VisionTransformer

        from .vit import DinoViT
        model = VisionTransformer(img_size=patch * 8, patch_size=patch, embed_dim=dim, depth=depth, num_heads=heads,
                                  init_values=1e-5, num_classes=0, dynamic_img_size=True)
        return DinoViT(model, _vit_contract(patch, dim, depth))
    return build


def _vit_contract(patch: int, dim: int, depth: int) -> BackboneContract:
    from .vit import VIT_OUTPUT_KINDS
    return BackboneContract(patch_size=patch, feature_dim=dim, num_blocks=depth, output_kinds=VIT_OUTPUT_KINDS)


def _daisy(patch: int) -> Callable[[], DenseBackbone]:
    def build() -> DenseBackbone:
        from .daisy import DaisyBackbone
        return DaisyBackbone(patch)
    return build


def _register_defaults() -> None:
    from .daisy import daisy_contract

    sizes = {"s": ("small", 384, 12), "b": ("base", 768, 12), "l": ("large", 1024, 24), "g": ("giant", 1536, 40)}
    for letter, (word, dim, depth) in sizes.items():
        for reg in (False, True):
            name = f"dinov2_vit{letter}14" + ("_reg" if reg else "")
            file = f"dinov2_vit{letter}14{'_reg4' if reg else ''}_pretrain.pth"
            arch = f"vit_{word}_patch14{'_reg4' if reg else ''}_dinov2"
            contract = _vit_contract(14, dim, depth)
            register(BackboneSpec(
                name=name, family="dinov2_reg" if reg else "dinov2",
                description=f"DINOv2 ViT-{letter.upper()}/14{' with 4 registers' if reg else ''} (Oquab et al. 2023)",
                contract=contract, preprocessing=IMAGENET, build=_timm_vit(arch, contract, registers=reg),
                source=PretrainedSource(file, DINOV2_URL.format(model=f"dinov2_vit{letter}14", file=file), "dinov2")))
    for letter, (word, dim, depth), file in (("s", sizes["s"], "dinov3_vits16_pretrain_lvd1689m-08c60483.pth"),
                                             ("b", sizes["b"], "dinov3_vitb16_pretrain_lvd1689m-73cec8be.pth")):
        contract = _vit_contract(16, dim, depth)
        register(BackboneSpec(
            name=f"dinov3_vit{letter}16", family="dinov3",
            description=f"DINOv3 ViT-{letter.upper()}/16 (Simeoni et al. 2025; licence-gated, local file only)",
            contract=contract, preprocessing=IMAGENET, build=_timm_dinov3(f"vit_{word}_patch16_dinov3", contract),
            source=PretrainedSource(file, None, "dinov3",
                                    note="DINOv3 weights are licence-gated: request them at https://ai.meta.com/dinov3/")))
    contract = _vit_contract(16, 768, 12)
    register(BackboneSpec(
        name="dino_vitb16", family="dino", description="DINO v1 ViT-B/16 (Caron et al. 2021)",
        contract=contract, preprocessing=IMAGENET, build=_timm_vit("vit_base_patch16_224.dino", contract),
        source=PretrainedSource("dino_vitbase16_pretrain.pth",
                                "https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth",
                                "dino")))
    register(BackboneSpec(
        name="daisy", family="classical", description="Weight-free DAISY + Lab colour descriptors on a 14 px grid",
        contract=daisy_contract(14), preprocessing=Preprocessing(IDENTITY_NORM.mean, IDENTITY_NORM.std, 448),
        build=_daisy(14), source=None))
    register(BackboneSpec(
        name="test_vit_tiny", family="test", description="Tiny random-init ViT/14 (dim 64, depth 4) for tests",
        contract=_vit_contract(14, 64, 4), preprocessing=Preprocessing(default_size=224), build=_tiny_vit(),
        source=None))


_register_defaults()

# ---- creation ---------------------------------------------------------------------------------------------------
AUTO_PREFERENCE = ("dinov2_vits14", "daisy")


def create_backbone(name: str, weights: str | Path | None = None, random_init: bool = False,
                    allow_download: bool = True) -> LoadedBackbone:
    """Build a backbone and load its weights.

    ``weights``: an explicit checkpoint (official or timm layout); ``random_init``: skip loading and use seeded
    random weights. Raises WeightsNotFoundError (exit code 2) when pretrained weights cannot be found.
    """
    if name == "auto":
        return create_auto(weights=weights, allow_download=allow_download)
    spec = get_spec(name)
    with torch.random.fork_rng(devices=[]):  # seeded init without reseeding the caller's global RNG
        torch.manual_seed(RANDOM_SEED)
        module = spec.build().eval()
    for param in module.parameters():
        param.requires_grad_(False)
    if spec.source is None:
        if weights is not None and spec.family != "test":
            raise ConfigError(f"backbone {name!r} is weight-free; --weights does not apply")
        kind = "weight-free" if spec.family == "classical" else "random"
        if weights is not None:
            return _load_into(spec, module, Path(weights), "timm")
        return LoadedBackbone(spec, module, WeightsInfo(kind))
    if random_init:
        return LoadedBackbone(spec, module, WeightsInfo("random"))
    path = resolve_weights(spec.source, weights, allow_download=allow_download)
    return _load_into(spec, module, path, spec.source.key_layout)


def _load_into(spec: BackboneSpec, module: DenseBackbone, path: Path, layout: str) -> LoadedBackbone:
    state = load_state_dict(path)
    module.load_official(state, layout, source=f"checkpoint {str(path)!r} for {spec.name}")
    return LoadedBackbone(spec, module.eval(), WeightsInfo("pretrained", str(path), weights_hash(path)))


def create_auto(weights: str | Path | None = None, allow_download: bool = True,
                log: Callable[[str], None] | None = None) -> LoadedBackbone:
    """DINOv2 ViT-S/14 when its weights resolve, otherwise the weight-free backbone; says which."""
    preferred, fallback = AUTO_PREFERENCE
    try:
        loaded = create_backbone(preferred, weights=weights, allow_download=allow_download)
        reason = f"using {preferred} (weights {loaded.weights.path})"
    except WeightsNotFoundError as exc:
        loaded = create_backbone(fallback)
        reason = f"using the weight-free '{fallback}' backbone: {preferred} weights unavailable ({exc})"
    (log or (lambda message: print(f"[soco] backbone auto: {message}")))(reason)
    return loaded
