"""Containers (mug, cup, kettle, bottle, jug, pan): rim points, handle top/bottom, spout tip, base centre.

Front is the side opposite the handle (or the spout / label side), so rim identities are object-relative.
Part names follow the functional taxonomy (rim, base, body, handle, spout, mouth, neck, bowl, side).
"""
from __future__ import annotations

import numpy as np

from ..mesh import MeshBuilder, rot_x, rot_z
from ..objects import KeypointSpec, concept, finalize, random_appearance
from . import register

RIM = concept("rim_point", "{identity} point of the rim")
HANDLE_TOP = concept("handle_top", "top of the handle", functional=True)
HANDLE_BOTTOM = concept("handle_bottom", "bottom of the handle", functional=True)
SPOUT = concept("spout_tip", "tip of the spout", functional=True)
BASE = concept("base_point", "{identity} point of the base edge")
LID = concept("lid_top", "top of the lid knob")
LABEL = concept("label_center", "center of the label")
SHOULDER = concept("shoulder_point", "{identity} point of the shoulder")
HANDLE_END = concept("handle_end", "end of the handle", functional=True)
DIRECTIONS = {"front": (1.0, 0.0), "rear": (-1.0, 0.0), "left": (0.0, 1.0), "right": (0.0, -1.0)}


def _identity(name: str) -> dict[str, str]:
    return {"front_rear": name} if name in ("front", "rear") else {"left_right": name}


def _rim_points(kps: list, radius: float, z: float, which=("front", "rear", "left", "right"), part: str = "rim") -> None:
    for name in which:
        dx, dy = DIRECTIONS[name]
        kps.append(KeypointSpec(RIM, part, np.array([dx * radius, dy * radius, z]), _identity(name)))


def _base_points(kps: list, radius: float, wall: str, which=("front", "rear")) -> None:
    """Points at the foot of the outer wall, just above the table: the base edge as a camera above sees it
    (the base disk itself faces the table)."""
    for name in which:
        dx, dy = DIRECTIONS[name]
        kps.append(KeypointSpec(BASE, wall, np.array([dx * radius, dy * radius, 0.002]), _identity(name)))


def _side_handle(b: MeshBuilder, kps: list, x_wall: float, z_low: float, z_high: float, thickness: float,
                 reach: float) -> None:
    """A C-shaped handle on the rear (-x) wall between two heights."""
    centre_z = (z_low + z_high) / 2
    major = (z_high - z_low) / 2
    # arc in the local xz plane bulging towards -x: rotate the +x-facing half-torus by 180 deg around z
    rotation = rot_z(np.pi) @ np.diag([reach / major, 1.0, 1.0])
    b.torus_arc("handle", [x_wall, 0, centre_z], major, thickness, -np.pi / 2, np.pi / 2, rotation)
    for c, u in ((HANDLE_TOP, np.radians(60)), (HANDLE_BOTTOM, np.radians(-25))):
        # outer surface of the (x-scaled) torus at arc angle u: the side a hand wraps around
        outer = major + thickness
        point = np.array([x_wall - outer * np.cos(u) * reach / major, 0.0, centre_z + outer * np.sin(u)])
        kps.append(KeypointSpec(c, "handle", point))


def _finish(b, kps, rng, instance_id, category, functions, params, seed):
    return finalize(b, kps, instance_id=instance_id, category=category, family="containers",
                    functional_parts=functions,
                    appearance=lambda parts: random_appearance(rng, parts, {"vessel": ("body", "side", "rim", "base",
                                                                                       "mouth", "neck", "spout")}),
                    params=params, seed=seed)


@register("mug", "containers", "Hand-held")
def mug(rng: np.random.Generator, instance_id: str, seed: int):
    r, h, t = rng.uniform(0.035, 0.05), rng.uniform(0.08, 0.12), rng.uniform(0.004, 0.007)
    b, kps = MeshBuilder(), []
    b.tube("body", [0, 0, 0], [0, 0, h], r, r, t, rim_part="rim", bottom_part="base", inner_part="interior")
    _side_handle(b, kps, -r + 0.002, h * rng.uniform(0.2, 0.3), h * rng.uniform(0.7, 0.85), rng.uniform(0.005, 0.008),
                 rng.uniform(0.025, 0.04))
    _rim_points(kps, r - t / 2, h)
    _base_points(kps, r, "body")
    functions = {"pour-with": ("rim",), "scoop-with": ("rim",), "press-with": ("base",), "hang-onto": ("handle",)}
    return _finish(b, kps, rng, instance_id, "mug", functions, dict(radius=r, height=h), seed)


@register("cup", "containers", "Hand-held")
def cup(rng: np.random.Generator, instance_id: str, seed: int):
    r1, h, t = rng.uniform(0.035, 0.05), rng.uniform(0.05, 0.08), rng.uniform(0.003, 0.005)
    r0 = r1 * rng.uniform(0.55, 0.75)
    b, kps = MeshBuilder(), []
    b.tube("side", [0, 0, 0], [0, 0, h], r0, r1, t, rim_part="rim", bottom_part="base", inner_part="bowl")
    wall_x = -(r0 + r1) / 2 + 0.002
    _side_handle(b, kps, wall_x, h * 0.3, h * 0.75, rng.uniform(0.004, 0.006), rng.uniform(0.015, 0.025))
    _rim_points(kps, r1 - t / 2, h)
    _base_points(kps, r0, "side")
    functions = {"pour-with": ("rim",), "scoop-with": ("bowl", "rim"), "press-with": ("base",)}
    return _finish(b, kps, rng, instance_id, "cup", functions, dict(top_radius=r1, height=h), seed)


@register("kettle", "containers", "Hand-held")
def kettle(rng: np.random.Generator, instance_id: str, seed: int):
    r, h = rng.uniform(0.07, 0.1), rng.uniform(0.12, 0.18)
    top_r = r * rng.uniform(0.55, 0.8)
    b, kps = MeshBuilder(), []
    b.frustum("body", [0, 0, 0], [0, 0, h], r, top_r, 32, cap0=True, cap1=True, cap_parts=("base", "lid"))
    knob_h = rng.uniform(0.012, 0.02)
    b.frustum("lid", [0, 0, h], [0, 0, h + knob_h], top_r * 0.25, top_r * 0.15, 16)
    spout_len = rng.uniform(0.06, 0.1)
    angle = np.radians(rng.uniform(30, 50))
    start = np.array([(r + top_r) / 2 - 0.01, 0.0, h * 0.45])
    tip = start + spout_len * np.array([np.cos(angle), 0.0, np.sin(angle)])
    b.tube("spout", start, tip, 0.014, 0.008, 0.002, rim_part="mouth", bottom=False)
    handle_low, handle_high = h * 0.35, h * 0.9
    _side_handle(b, kps, -(r + top_r) / 2 + 0.004, handle_low, handle_high, rng.uniform(0.007, 0.01),
                 rng.uniform(0.04, 0.06))
    # on the lip of the spout opening, its upper side (the centre of the opening is not a surface point)
    kps.append(KeypointSpec(SPOUT, "mouth", tip + 0.007 * np.array([-np.sin(angle), 0.0, np.cos(angle)])))
    _base_points(kps, r, "body")
    kps.append(KeypointSpec(LID, "lid", np.array([0.0, 0.0, h + knob_h])))
    functions = {"pour-with": ("spout", "mouth"), "press-with": ("base",)}
    return _finish(b, kps, rng, instance_id, "kettle", functions, dict(radius=r, height=h, spout=spout_len), seed)


@register("bottle", "containers", "Hand-held")
def bottle(rng: np.random.Generator, instance_id: str, seed: int):
    r, h = rng.uniform(0.03, 0.045), rng.uniform(0.14, 0.22)
    neck_r, neck_h = r * rng.uniform(0.3, 0.45), rng.uniform(0.03, 0.06)
    shoulder_h = rng.uniform(0.025, 0.05)
    b, kps = MeshBuilder(), []
    b.frustum("body", [0, 0, 0], [0, 0, h], r, r, 32, cap0=True, cap1=False, cap_parts=("base", "body"))
    b.frustum("neck", [0, 0, h], [0, 0, h + shoulder_h], r, neck_r, 32, cap0=False, cap1=False)
    top = h + shoulder_h + neck_h
    b.tube("neck", [0, 0, h + shoulder_h], [0, 0, top], neck_r, neck_r, 0.002, rim_part="mouth", bottom=False,
           inner_part="mouth")
    label_h = h * rng.uniform(0.35, 0.55)
    b.box("label", [r + 0.0008, 0, h * 0.45], [0.0016, r * 1.1, label_h])
    kps.append(KeypointSpec(LABEL, "label", np.array([r + 0.0016, 0.0, h * 0.45])))
    _rim_points(kps, neck_r - 0.001, top, ("front", "rear"), part="mouth")
    mid = h + shoulder_h * 0.5
    kps.append(KeypointSpec(SHOULDER, "neck", np.array([(r + neck_r) / 2, 0.0, mid]), {"front_rear": "front"}))
    _base_points(kps, r, "body")
    functions = {"pour-with": ("mouth", "neck"), "press-with": ("base",), "roll-onto": ("body",)}
    return _finish(b, kps, rng, instance_id, "bottle", functions, dict(radius=r, height=h), seed)


@register("jug", "containers", "Hand-held")
def jug(rng: np.random.Generator, instance_id: str, seed: int):
    r0, h = rng.uniform(0.045, 0.06), rng.uniform(0.12, 0.18)
    r1 = r0 * rng.uniform(0.8, 1.0)
    t = rng.uniform(0.003, 0.005)
    b, kps = MeshBuilder(), []
    b.tube("body", [0, 0, 0], [0, 0, h], r0, r1, t, rim_part="rim", bottom_part="base", inner_part="interior")
    spout_len = rng.uniform(0.015, 0.03)
    lip = np.array([[0.0, -0.018], [spout_len, 0.0], [0.0, 0.018]])
    b.extrude("spout", lip, 0.004, rotation=np.eye(3), offset=(r1 - 0.003, 0.0, h - 0.002))
    _side_handle(b, kps, -(r0 + r1) / 2 + 0.003, h * 0.25, h * 0.85, rng.uniform(0.006, 0.009), rng.uniform(0.03, 0.045))
    kps.append(KeypointSpec(SPOUT, "spout", np.array([r1 - 0.003 + spout_len, 0.0, h])))
    _rim_points(kps, r1 - t / 2, h, ("left", "right"))
    _base_points(kps, r0, "body")
    functions = {"pour-with": ("rim", "spout"), "scoop-with": ("rim",), "press-with": ("base",)}
    return _finish(b, kps, rng, instance_id, "jug", functions, dict(radius=r0, height=h, spout=spout_len), seed)


@register("pan", "containers", "Hand-held")
def pan(rng: np.random.Generator, instance_id: str, seed: int):
    r1, h = rng.uniform(0.1, 0.15), rng.uniform(0.035, 0.06)
    r0 = r1 * rng.uniform(0.8, 0.92)
    t = rng.uniform(0.004, 0.006)
    b, kps = MeshBuilder(), []
    b.tube("side", [0, 0, 0], [0, 0, h], r0, r1, t, 40, rim_part="rim", bottom_part="base", inner_part="bowl")
    handle_len, handle_w = rng.uniform(0.12, 0.2), rng.uniform(0.018, 0.026)
    tilt = np.radians(rng.uniform(5, 20))
    start = np.array([-(r0 + r1) / 2 + 0.004, 0.0, h * 0.75])
    end = start + handle_len * np.array([-np.cos(tilt), 0.0, np.sin(tilt)])
    b.box("handle", (start + end) / 2, [handle_len, handle_w, 0.01], rotation=_tilt_y(tilt))
    kps.append(KeypointSpec(HANDLE_END, "handle", end + _tilt_y(tilt) @ np.array([0.0, 0.0, 0.005])))
    _rim_points(kps, r1 - t / 2, h, ("front", "left", "right"))
    _base_points(kps, r0, "side")
    functions = {"pour-with": ("rim",), "scoop-with": ("bowl", "rim"), "pound-with": ("base", "side"),
                 "press-with": ("base",)}
    return _finish(b, kps, rng, instance_id, "pan", functions, dict(radius=r1, height=h, handle=handle_len), seed)


def _tilt_y(angle: float) -> np.ndarray:
    """Rotation about y that lifts the -x end of a handle by ``angle``."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1.0, 0], [-s, 0, c]])


_ = rot_x  # kept for symmetric use in tools
