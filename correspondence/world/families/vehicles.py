"""Vehicles (car, bus, truck): wheels front/rear x left/right, head/tail lights, mirrors, roof corners."""
from __future__ import annotations

import numpy as np

from ..mesh import MeshBuilder
from ..objects import KeypointSpec, concept, finalize, random_appearance
from . import register

WHEEL = concept("wheel_center", "center point of the {identity} wheel")
HEADLIGHT = concept("headlight", "{identity} headlight")
TAILLIGHT = concept("taillight", "{identity} taillight")
MIRROR = concept("mirror", "outer tip of the {identity} side mirror")
ROOF = concept("roof_corner", "{identity} corner of the roof")
SIDES = {"left": 1.0, "right": -1.0}
ENDS = {"front": 1.0, "rear": -1.0}
DARK = {"wheel": (0.08, 0.08, 0.09), "window": (0.15, 0.2, 0.28)}


def _wheels(b: MeshBuilder, kps: list, length_pos: float, half_track: float, radius: float, width: float,
            x_front: float, x_rear: float) -> None:
    for end, x in (("front", x_front), ("rear", x_rear)):
        for side, s in SIDES.items():
            inner, outer = s * (half_track - width), s * half_track
            b.frustum("wheel", [x, inner, radius], [x, outer, radius], radius, radius, 20)
            kps.append(KeypointSpec(WHEEL, "wheel", np.array([x, outer, radius]), {"front_rear": end, "left_right": side}))


def _lights(b: MeshBuilder, kps: list, x: float, half_width: float, z: float, size: float, front: bool) -> None:
    part, c = ("headlight", HEADLIGHT) if front else ("taillight", TAILLIGHT)
    sign = 1.0 if front else -1.0
    for side, s in SIDES.items():
        y = s * half_width * 0.65
        b.box(part, [x + sign * 0.002, y, z], [0.004, size * 1.6, size])
        kps.append(KeypointSpec(c, part, np.array([x + sign * 0.004, y, z]), {"left_right": side}))


def _mirrors(b: MeshBuilder, kps: list, x: float, half_width: float, z: float, size: float) -> None:
    for side, s in SIDES.items():
        reach = size * 1.4
        b.box("mirror", [x, s * (half_width + reach / 2), z], [size * 0.5, reach, size])
        kps.append(KeypointSpec(MIRROR, "mirror", np.array([x, s * (half_width + reach), z]), {"left_right": side}))


def _roof(kps: list, part: str, x0: float, x1: float, half_width: float, z: float) -> None:
    for end, x in (("front", x1), ("rear", x0)):
        for side, s in SIDES.items():
            kps.append(KeypointSpec(ROOF, part, np.array([x, s * half_width, z]), {"front_rear": end, "left_right": side}))


def _finish(b, kps, rng, instance_id, category, params, seed):
    return finalize(b, kps, instance_id=instance_id, category=category, family="vehicles", functional_parts={},
                    appearance=lambda parts: random_appearance(rng, parts, {"lights": ("headlight",)}, DARK),
                    params=params, seed=seed)


@register("car", "vehicles", "Transportation")
def car(rng: np.random.Generator, instance_id: str, seed: int):
    L, W = rng.uniform(0.30, 0.42), rng.uniform(0.14, 0.18)
    r, ww = rng.uniform(0.03, 0.042), rng.uniform(0.018, 0.026)
    hb, hc = rng.uniform(0.05, 0.075), rng.uniform(0.04, 0.06)
    z0 = r * 0.55
    cabin_len, cabin_shift = L * rng.uniform(0.42, 0.55), -L * rng.uniform(0.0, 0.12)
    b, kps = MeshBuilder(), []
    b.box("body", [0, 0, z0 + hb / 2], [L, W - 2 * ww * 0.3, hb])
    b.box("cabin", [cabin_shift, 0, z0 + hb + hc / 2], [cabin_len, (W - 2 * ww * 0.3) * 0.9, hc])
    half = (W - 2 * ww * 0.3) / 2
    _wheels(b, kps, L, half + ww * 0.7, r, ww, L * 0.32, -L * 0.32)
    _lights(b, kps, L / 2, half, z0 + hb * 0.6, hb * 0.25, True)
    _lights(b, kps, -L / 2, half, z0 + hb * 0.6, hb * 0.25, False)
    _mirrors(b, kps, cabin_shift + cabin_len / 2 - 0.01, half * 0.9, z0 + hb + hc * 0.2, hc * 0.3)
    _roof(kps, "cabin", cabin_shift - cabin_len / 2, cabin_shift + cabin_len / 2, half * 0.9, z0 + hb + hc)
    return _finish(b, kps, rng, instance_id, "car", dict(length=L, width=W, wheel_radius=r), seed)


@register("bus", "vehicles", "Transportation")
def bus(rng: np.random.Generator, instance_id: str, seed: int):
    L, W, H = rng.uniform(0.45, 0.6), rng.uniform(0.12, 0.15), rng.uniform(0.13, 0.17)
    r, ww = rng.uniform(0.028, 0.036), rng.uniform(0.016, 0.022)
    z0 = r * 0.5
    b, kps = MeshBuilder(), []
    half = W / 2
    b.box("body", [0, 0, z0 + H / 2], [L, W, H])
    windows = int(rng.integers(4, 7))
    for side, s in SIDES.items():
        b.box("window", [0, s * (half + 0.0015), z0 + H * 0.68], [L * 0.8, 0.003, H * 0.25])
    b.box("window", [L / 2 + 0.0015, 0, z0 + H * 0.68], [0.003, W * 0.8, H * 0.3])
    _wheels(b, kps, L, half + ww * 0.6, r, ww, L * 0.36, -L * 0.3)
    _lights(b, kps, L / 2, half, z0 + H * 0.2, H * 0.1, True)
    _lights(b, kps, -L / 2, half, z0 + H * 0.2, H * 0.1, False)
    _mirrors(b, kps, L / 2 - 0.01, half, z0 + H * 0.75, H * 0.12)
    _roof(kps, "body", -L / 2, L / 2, half, z0 + H)
    return _finish(b, kps, rng, instance_id, "bus", dict(length=L, width=W, height=H, windows=windows), seed)


@register("truck", "vehicles", "Transportation")
def truck(rng: np.random.Generator, instance_id: str, seed: int):
    L, W = rng.uniform(0.42, 0.55), rng.uniform(0.14, 0.17)
    r, ww = rng.uniform(0.032, 0.042), rng.uniform(0.018, 0.026)
    hc, hg = rng.uniform(0.09, 0.12), rng.uniform(0.12, 0.16)
    z0 = r * 0.6
    cab = L * rng.uniform(0.25, 0.32)
    half = W / 2
    b, kps = MeshBuilder(), []
    b.box("chassis", [0, 0, z0 + 0.01], [L, W * 0.8, 0.02])
    b.box("cabin", [L / 2 - cab / 2, 0, z0 + 0.02 + hc / 2], [cab, W, hc])
    cargo_len = L - cab - 0.01
    b.box("cargo", [-L / 2 + cargo_len / 2, 0, z0 + 0.02 + hg / 2], [cargo_len, W, hg])
    _wheels(b, kps, L, half + ww * 0.6, r, ww, L / 2 - cab / 2, -L * 0.32)
    _lights(b, kps, L / 2, half, z0 + 0.02 + hc * 0.25, hc * 0.12, True)
    _lights(b, kps, -L / 2, half, z0 + 0.02 + hg * 0.15, hg * 0.08, False)
    _mirrors(b, kps, L / 2 - cab * 0.3, half, z0 + 0.02 + hc * 0.7, hc * 0.15)
    _roof(kps, "cargo", -L / 2, -L / 2 + cargo_len, half, z0 + 0.02 + hg)
    return _finish(b, kps, rng, instance_id, "truck", dict(length=L, width=W, cabin=cab), seed)
