"""Furniture (chair, stool, table): legs front/rear x left/right, seat or top corners, back top corners."""
from __future__ import annotations

import numpy as np

from ..mesh import MeshBuilder
from ..objects import KeypointSpec, concept, finalize, random_appearance
from . import register

LEG = concept("leg_bottom", "bottom end of the {identity} leg")
SEAT = concept("seat_corner", "{identity} corner of the seat")
TOP = concept("top_corner", "{identity} corner of the tabletop")
BACK = concept("back_top", "{identity} top corner of the backrest")
SIDES = {"left": 1.0, "right": -1.0}
ENDS = {"front": 1.0, "rear": -1.0}


def _legs(b: MeshBuilder, kps: list, half_x: float, half_y: float, height: float, thickness: float,
          round_legs: bool, splay: float = 0.0) -> None:
    for end, sx in ENDS.items():
        for side, sy in SIDES.items():
            top = np.array([sx * half_x, sy * half_y, height])
            bottom = np.array([sx * (half_x + splay), sy * (half_y + splay), 0.0])
            if round_legs:
                b.frustum("leg", bottom, top, thickness / 2, thickness / 2, 12)
            else:
                centre = (top + bottom) / 2
                b.box("leg", centre, [thickness, thickness, height])
            # the outer bottom corner (round legs: the outermost point of the foot), which a camera above the floor
            # can see; the centre of the foot's underside never is
            outward = np.array([sx, sy, 0.0]) * (thickness / 2 if not round_legs else thickness / 2 / np.sqrt(2))
            kps.append(KeypointSpec(LEG, "leg", bottom + outward, {"front_rear": end, "left_right": side}))


def _corners(kps: list, c, part: str, half_x: float, half_y: float, z: float) -> None:
    for end, sx in ENDS.items():
        for side, sy in SIDES.items():
            kps.append(KeypointSpec(c, part, np.array([sx * half_x, sy * half_y, z]), {"front_rear": end, "left_right": side}))


def _finish(b, kps, rng, instance_id, category, params, seed):
    return finalize(b, kps, instance_id=instance_id, category=category, family="furniture", functional_parts={},
                    appearance=lambda parts: random_appearance(rng, parts, {"frame": ("leg", "rung", "post")}),
                    params=params, seed=seed)


@register("chair", "furniture", "Furniture")
def chair(rng: np.random.Generator, instance_id: str, seed: int):
    w, d = rng.uniform(0.36, 0.5), rng.uniform(0.36, 0.48)
    h, t = rng.uniform(0.4, 0.48), rng.uniform(0.025, 0.045)
    back_h, leg = rng.uniform(0.3, 0.48), rng.uniform(0.025, 0.04)
    round_legs = bool(rng.random() < 0.5)
    b, kps = MeshBuilder(), []
    b.box("seat", [0, 0, h + t / 2], [d, w, t])
    inset = leg / 2 + 0.01
    _legs(b, kps, d / 2 - inset, w / 2 - inset, h, leg, round_legs)
    back_t = rng.uniform(0.02, 0.035)
    # the backrest stands behind the seat (not on it), so the seat's rear corners stay seat corners
    b.box("back", [-d / 2 - back_t / 2, 0, h + (t + back_h) / 2], [back_t, w, t + back_h])
    _corners(kps, SEAT, "seat", d / 2, w / 2, h + t)
    for side, sy in SIDES.items():
        kps.append(KeypointSpec(BACK, "back", np.array([-d / 2 - back_t / 2, sy * w / 2, h + t + back_h]), {"left_right": side}))
    return _finish(b, kps, rng, instance_id, "chair", dict(width=w, depth=d, seat_height=h, back_height=back_h), seed)


@register("stool", "furniture", "Furniture")
def stool(rng: np.random.Generator, instance_id: str, seed: int):
    s, h = rng.uniform(0.28, 0.38), rng.uniform(0.45, 0.7)
    t, leg = rng.uniform(0.03, 0.05), rng.uniform(0.022, 0.035)
    splay = rng.uniform(0.0, 0.05)
    b, kps = MeshBuilder(), []
    b.box("seat", [0, 0, h + t / 2], [s, s, t])
    half = s / 2 - leg / 2 - 0.015
    _legs(b, kps, half, half, h, leg, True, splay)
    z = h * rng.uniform(0.3, 0.45)
    frac = 1 - z / h
    for end, sx in ENDS.items():  # rungs between the front and rear legs on each side
        x = sx * (half + splay * frac)
        b.frustum("rung", [x, -(half + splay * frac), z], [x, half + splay * frac, z], leg * 0.3, leg * 0.3, 8)
    _corners(kps, SEAT, "seat", s / 2, s / 2, h + t)
    return _finish(b, kps, rng, instance_id, "stool", dict(size=s, height=h, splay=splay), seed)


@register("table", "furniture", "Furniture")
def table(rng: np.random.Generator, instance_id: str, seed: int):
    w, d = rng.uniform(0.8, 1.4), rng.uniform(0.6, 0.9)
    h, t, leg = rng.uniform(0.68, 0.78), rng.uniform(0.03, 0.05), rng.uniform(0.04, 0.07)
    b, kps = MeshBuilder(), []
    b.box("top", [0, 0, h + t / 2], [d, w, t])
    inset = leg / 2 + rng.uniform(0.02, 0.08)
    _legs(b, kps, d / 2 - inset, w / 2 - inset, h, leg, bool(rng.random() < 0.5))
    b.box("apron", [0, 0, h - 0.04], [d - 2 * inset, w - 2 * inset, 0.08])
    _corners(kps, TOP, "top", d / 2, w / 2, h + t)
    return _finish(b, kps, rng, instance_id, "table", dict(width=w, depth=d, height=h), seed)
