"""Hand tools (hammer, mallet, knife, spatula, spoon, screwdriver), lying on the table: handle along -x, working
end at +x, +y is the tool's left. Part names follow the functional taxonomy (face, claw, head, blade, edge, tip...).
"""
from __future__ import annotations

import numpy as np

from ..mesh import MeshBuilder, rot_x
from ..objects import KeypointSpec, concept, finalize, random_appearance
from . import register

HANDLE_END = concept("handle_end", "end of the handle", functional=True)
HANDLE_NECK = concept("handle_neck", "end of the handle where it meets the working end", functional=True)
FACE = concept("face_center", "center of the {identity} striking face", functional=True)
CLAW = concept("claw_tip", "tip of the claw", functional=True)
HEAD_TOP = concept("head_top", "top of the head")
BLADE_TIP = concept("blade_tip", "tip of the blade", functional=True)
EDGE_MID = concept("edge_middle", "middle of the cutting edge", functional=True)
SPINE_MID = concept("spine_middle", "middle of the spine")
EDGE_CORNER = concept("edge_corner", "{identity} corner of the blade edge", functional=True)
BOWL_TIP = concept("bowl_tip", "tip of the bowl", functional=True)
BOWL_CENTER = concept("bowl_center", "center of the bowl", functional=True)
SHAFT_TIP = concept("shaft_tip", "tip of the shaft", functional=True)
AXIS_X = np.array([1.0, 0.0, 0.0])


def _handle(b: MeshBuilder, kps: list, length: float, radius: float, z: float, x_end: float = 0.0) -> float:
    """Round handle from ``x_end - length`` to ``x_end`` at height ``z``; returns its -x end."""
    start = x_end - length
    b.frustum("handle", [start, 0, z], [x_end, 0, z], radius, radius * 0.85, 16)
    kps.append(KeypointSpec(HANDLE_END, "handle", np.array([start, 0.0, z])))
    return start


def _finish(b, kps, rng, instance_id, category, functions, params, seed):
    return finalize(b, kps, instance_id=instance_id, category=category, family="tools", functional_parts=functions,
                    appearance=lambda parts: random_appearance(rng, parts, {"metal": ("head", "face", "claw", "blade",
                                                                                      "edge", "tip", "shaft")}),
                    params=params, seed=seed)


@register("hammer", "tools", "Hand-held")
def hammer(rng: np.random.Generator, instance_id: str, seed: int):
    hl, hr = rng.uniform(0.2, 0.3), rng.uniform(0.011, 0.016)
    head_len, head_w = rng.uniform(0.09, 0.13), rng.uniform(0.022, 0.03)
    z = head_w / 2
    b, kps = MeshBuilder(), []
    _handle(b, kps, hl, hr, z)
    # head across y at the +x end: face on the left (+y), claw on the right (-y)
    b.box("head", [head_w / 2, 0, z], [head_w, head_len * 0.6, head_w])
    face_r, face_len = head_w * 0.55, head_len * 0.2
    y0 = head_len * 0.3
    b.frustum("head", [head_w / 2, y0, z], [head_w / 2, y0 + face_len, z], face_r, face_r, 20, cap1=False)
    b.disk("face", [head_w / 2, y0 + face_len, z], [0, 1, 0], face_r, 20)
    claw_len = head_len * rng.uniform(0.25, 0.35)
    claw = np.array([[-y0, -head_w / 2], [-y0 - claw_len, -head_w * 0.1], [-y0 - claw_len, head_w * 0.1],
                     [-y0, head_w / 2]])
    # polygon in the (y, x) plane of the head, extruded along z
    b.extrude("claw", claw[:, ::-1] * np.array([1, 1]) + np.array([head_w / 2, 0]), head_w * 0.6,
              rotation=np.eye(3), offset=(0, 0, z))
    kps.append(KeypointSpec(FACE, "face", np.array([head_w / 2, y0 + face_len, z])))
    kps.append(KeypointSpec(CLAW, "claw", np.array([head_w / 2, -y0 - claw_len, z])))
    kps.append(KeypointSpec(HEAD_TOP, "head", np.array([head_w, 0.0, z])))
    functions = {"pound-with": ("face",), "pull-with": ("claw",), "press-with": ("face",)}
    return _finish(b, kps, rng, instance_id, "hammer", functions, dict(handle=hl, head=head_len), seed)


@register("mallet", "tools", "Hand-held")
def mallet(rng: np.random.Generator, instance_id: str, seed: int):
    hl, hr = rng.uniform(0.2, 0.3), rng.uniform(0.011, 0.016)
    head_len, head_r = rng.uniform(0.08, 0.12), rng.uniform(0.022, 0.035)
    z = head_r
    b, kps = MeshBuilder(), []
    _handle(b, kps, hl, hr, z)
    cx = head_r * 0.9
    b.frustum("head", [cx, -head_len / 2, z], [cx, head_len / 2, z], head_r, head_r, 24, cap0=False, cap1=False)
    for side, s in (("left", 1.0), ("right", -1.0)):
        b.disk("face", [cx, s * head_len / 2, z], [0, s, 0], head_r, 24)
        kps.append(KeypointSpec(FACE, "face", np.array([cx, s * head_len / 2, z]), {"left_right": side}))
    kps.append(KeypointSpec(HEAD_TOP, "head", np.array([cx + head_r, 0.0, z])))
    functions = {"pound-with": ("face",), "press-with": ("face",)}
    return _finish(b, kps, rng, instance_id, "mallet", functions, dict(handle=hl, head=head_len), seed)


@register("knife", "tools", "Hand-held")
def knife(rng: np.random.Generator, instance_id: str, seed: int):
    hl, blade_len = rng.uniform(0.09, 0.13), rng.uniform(0.12, 0.2)
    blade_w, t = rng.uniform(0.02, 0.04), rng.uniform(0.002, 0.004)
    hw, hh = rng.uniform(0.018, 0.026), rng.uniform(0.012, 0.018)
    z = hh / 2
    b, kps = MeshBuilder(), []
    b.box("handle", [-hl / 2, 0, z], [hl, hw, hh])
    kps.append(KeypointSpec(HANDLE_END, "handle", np.array([-hl, 0.0, z])))
    # blade lies flat; spine along +y side, cutting edge the curved -y side, tip at +x
    spine_y, edge_y = blade_w * 0.35, -blade_w * 0.65
    poly = np.array([[0.0, edge_y], [blade_len * 0.7, edge_y], [blade_len * 0.92, edge_y * 0.55],
                     [blade_len, spine_y * 0.6], [blade_len * 0.6, spine_y], [0.0, spine_y]])
    edge = np.array([True, True, True, False, False, False])
    b.extrude("blade", poly, t, offset=(0.0, 0.0, z), edge_part="edge", edge_mask=edge)
    tip = np.array([blade_len, spine_y * 0.6, z])
    b.ellipsoid("tip", tip, [0.006, 0.004, t * 0.6], rows=6, cols=10)
    kps.append(KeypointSpec(BLADE_TIP, "tip", tip + np.array([0.006, 0.0, 0.0])))
    kps.append(KeypointSpec(EDGE_MID, "edge", np.array([blade_len * 0.35, edge_y, z])))
    kps.append(KeypointSpec(SPINE_MID, "blade", np.array([blade_len * 0.3, spine_y, z])))
    kps.append(KeypointSpec(HANDLE_NECK, "handle", np.array([0.0, 0.0, z + hh / 2])))
    functions = {"cut-with": ("edge",), "pierce-with": ("tip",), "scrape-with": ("edge",), "spread-with": ("blade",)}
    return _finish(b, kps, rng, instance_id, "knife", functions, dict(blade=blade_len, width=blade_w), seed)


@register("spatula", "tools", "Hand-held")
def spatula(rng: np.random.Generator, instance_id: str, seed: int):
    hl, hr = rng.uniform(0.13, 0.2), rng.uniform(0.008, 0.012)
    blade_len, blade_w = rng.uniform(0.07, 0.1), rng.uniform(0.05, 0.08)
    t = rng.uniform(0.002, 0.004)
    z = hr
    b, kps = MeshBuilder(), []
    _handle(b, kps, hl, hr, z, x_end=0.0)
    neck = 0.02
    b.box("blade", [neck / 2, 0, z], [neck, 0.012, t])
    poly = np.array([[neck, -blade_w * 0.3], [neck + blade_len, -blade_w / 2], [neck + blade_len, blade_w / 2],
                     [neck, blade_w * 0.3]])
    b.extrude("blade", poly, t, offset=(0.0, 0.0, z), edge_part="edge", edge_mask=np.array([False, True, False, False]))
    kps.append(KeypointSpec(HANDLE_NECK, "handle", np.array([0.0, 0.0, z + hr * 0.85])))
    for side, s in (("left", 1.0), ("right", -1.0)):
        kps.append(KeypointSpec(EDGE_CORNER, "edge", np.array([neck + blade_len, s * blade_w / 2, z]), {"left_right": side}))
    functions = {"scrape-with": ("edge",), "lift-with": ("blade",), "spread-with": ("blade",),
                 "press-with": ("blade",)}
    return _finish(b, kps, rng, instance_id, "spatula", functions, dict(handle=hl, blade=blade_len), seed)


@register("spoon", "tools", "Hand-held")
def spoon(rng: np.random.Generator, instance_id: str, seed: int):
    hl, hw = rng.uniform(0.1, 0.15), rng.uniform(0.008, 0.013)
    bowl_len, bowl_w = rng.uniform(0.04, 0.06), rng.uniform(0.025, 0.04)
    depth = rng.uniform(0.006, 0.012)
    b, kps = MeshBuilder(), []
    z = depth
    b.box("handle", [-hl / 2, 0, z], [hl, hw, 0.003])
    kps.append(KeypointSpec(HANDLE_END, "handle", np.array([-hl, 0.0, z])))
    centre = np.array([bowl_len / 2, 0.0, depth])
    b.ellipsoid("bowl", centre, [bowl_len / 2, bowl_w / 2, depth], rows=10, cols=20)
    kps.append(KeypointSpec(BOWL_TIP, "bowl", centre + np.array([bowl_len / 2, 0.0, 0.0])))
    kps.append(KeypointSpec(BOWL_CENTER, "bowl", centre + np.array([0.0, 0.0, depth])))
    kps.append(KeypointSpec(HANDLE_NECK, "handle", np.array([0.0, 0.0, z + 0.0015])))
    functions = {"scoop-with": ("bowl",), "mix-with": ("bowl",), "press-with": ("bowl",)}
    return _finish(b, kps, rng, instance_id, "spoon", functions, dict(handle=hl, bowl=bowl_len), seed)


@register("screwdriver", "tools", "Hand-held")
def screwdriver(rng: np.random.Generator, instance_id: str, seed: int):
    hl, hr = rng.uniform(0.08, 0.12), rng.uniform(0.013, 0.02)
    shaft_len, shaft_r = rng.uniform(0.07, 0.15), rng.uniform(0.0025, 0.004)
    z = hr
    b, kps = MeshBuilder(), []
    _handle(b, kps, hl, hr, z, x_end=0.0)
    b.frustum("shaft", [0, 0, z], [shaft_len, 0, z], shaft_r, shaft_r, 12, cap0=False, cap1=False)
    tip_len = 0.012
    b.frustum("tip", [shaft_len, 0, z], [shaft_len + tip_len, 0, z], shaft_r, shaft_r * 0.35, 12, cap0=False,
              scale_xy=(1.0, 0.45))
    kps.append(KeypointSpec(SHAFT_TIP, "tip", np.array([shaft_len + tip_len, 0.0, z])))
    kps.append(KeypointSpec(HANDLE_NECK, "handle", np.array([0.0, 0.0, z + hr * 0.85])))
    functions = {"poke-with": ("tip",), "pry-with": ("tip",), "dig-with": ("tip", "shaft"), "scrape-with": ("tip",)}
    return _finish(b, kps, rng, instance_id, "screwdriver", functions, dict(shaft=shaft_len), seed)


_ = (rot_x, AXIS_X)
