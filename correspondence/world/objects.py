"""Assembling an :class:`ObjectInstance`: random appearance, keypoints snapped onto the surface, checks."""
from __future__ import annotations

import colorsys
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from ..errors import InputError
from ..taxonomy import Concept, Identity, Keypoint, PartKind
from .mesh import MeshBuilder
from .types import Appearance, ObjectInstance, ObjectKeypoint

TEXTURES = ("plain", "stripes", "checker", "noise")


def random_color(rng: np.random.Generator, saturation=(0.3, 0.9), value=(0.35, 0.95)) -> tuple[float, float, float]:
    return tuple(float(c) for c in colorsys.hsv_to_rgb(rng.random(), rng.uniform(*saturation), rng.uniform(*value)))


def random_appearance(rng: np.random.Generator, part_names: tuple[str, ...],
                      groups: Mapping[str, tuple[str, ...]] | None = None,
                      fixed: Mapping[str, tuple[float, float, float]] | None = None) -> Appearance:
    """One colour per group of parts (e.g. all wheels black-ish), a random texture, scale and strength."""
    colors: dict[str, tuple[float, float, float]] = dict(fixed or {})
    for members in (groups or {}).values():
        color = random_color(rng)
        for part in members:
            colors.setdefault(part, color)
    for part in part_names:
        colors.setdefault(part, random_color(rng))
    return Appearance(colors, texture=str(rng.choice(TEXTURES)), texture_scale=float(rng.uniform(0.01, 0.05)),
                      texture_strength=float(rng.uniform(0.1, 0.35)), specular=float(rng.uniform(0.05, 0.5)))


@dataclass
class KeypointSpec:
    concept: Concept
    part: str
    position: np.ndarray
    identity: dict[str, str] = field(default_factory=dict)


def closest_surface_points(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Closest mesh point and its triangle id for each query point (Open3D)."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(faces.astype(np.uint32)))
    result = scene.compute_closest_points(o3d.core.Tensor(points.astype(np.float32)))
    return result["points"].numpy().astype(np.float64), result["primitive_ids"].numpy().astype(np.int64)


def finalize(builder: MeshBuilder, keypoints: list[KeypointSpec], *, instance_id: str, category: str, family: str,
             functional_parts: Mapping[str, tuple[str, ...]], appearance: Callable[[tuple[str, ...]], Appearance],
             params: Mapping[str, float], seed: int, snap_tolerance: float = 0.004) -> ObjectInstance:
    """Build the mesh, snap every keypoint onto the surface of its declared part, and check the semantics."""
    vertices, faces, face_parts, part_names = builder.build()
    positions = np.array([k.position for k in keypoints], dtype=np.float64).reshape(-1, 3)
    placed: list[ObjectKeypoint] = []
    if len(keypoints):
        for i, spec in enumerate(keypoints):
            part_faces = np.flatnonzero(face_parts == part_names.index(spec.part))
            sub_vertices_idx = np.unique(faces[part_faces])
            remap = -np.ones(len(vertices), dtype=np.int64)
            remap[sub_vertices_idx] = np.arange(len(sub_vertices_idx))
            snapped, _ = closest_surface_points(vertices[sub_vertices_idx], remap[faces[part_faces]], positions[i:i + 1])
            if np.linalg.norm(snapped[0] - positions[i]) > snap_tolerance:
                raise InputError(f"{category}: keypoint {spec.concept.name} {spec.identity} is "
                                 f"{np.linalg.norm(snapped[0] - positions[i]) * 1000:.1f} mm off part {spec.part!r}")
            placed.append(ObjectKeypoint(Keypoint(spec.concept, Identity.of(spec.identity)), snapped[0], spec.part))
    names = [k.name for k in placed]
    if len(set(names)) != len(names):
        raise InputError(f"{category}: duplicate keypoint names {names}")
    for function, parts in functional_parts.items():
        missing = [p for p in parts if p not in part_names]
        if missing:
            raise InputError(f"{category}: function {function} names unknown parts {missing}")
    return ObjectInstance(instance_id, category, family, vertices, faces, face_parts, part_names, tuple(placed),
                          dict(functional_parts), appearance(part_names), dict(params), seed)


def concept(name: str, template: str = "", functional: bool = False) -> Concept:
    return Concept(name, template, PartKind.FUNCTIONAL if functional else PartKind.STRUCTURAL)
