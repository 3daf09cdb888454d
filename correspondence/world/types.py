"""Data types of the procedural world.

Object frame: metres, origin at the centre of the object's footprint on the ground, +x towards the object's
front, +y towards the object's left, +z up. So "front-left" is the +x +y corner, as in the taxonomy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ..camera import CameraIntrinsics
from ..taxonomy import Keypoint


@dataclass(frozen=True)
class Appearance:
    """Per-part albedo and a procedural texture; enough variety that instances differ in colour and texture."""

    part_colors: Mapping[str, tuple[float, float, float]]  # RGB in [0, 1] per part name
    texture: str = "plain"  # plain | stripes | checker | noise
    texture_scale: float = 0.02  # metres per texture period
    texture_strength: float = 0.25
    specular: float = 0.2


@dataclass(frozen=True)
class ObjectKeypoint:
    """A taxonomy keypoint placed on the object: a surface point of part ``part``."""

    keypoint: Keypoint
    position: np.ndarray  # (3,) object frame, on (or within 1 mm of) the surface
    part: str

    @property
    def name(self) -> str:
        return self.keypoint.name


@dataclass(frozen=True, eq=False)
class ObjectInstance:
    """One procedurally generated (or loaded) object: a part-labelled triangle mesh plus its semantics."""

    instance_id: str
    category: str
    family: str
    vertices: np.ndarray  # (V, 3) float64
    faces: np.ndarray  # (F, 3) int32
    face_parts: np.ndarray  # (F,) int16, index into part_names
    part_names: tuple[str, ...]
    keypoints: tuple[ObjectKeypoint, ...]
    functional_parts: Mapping[str, tuple[str, ...]]  # function ("pour-with") -> part names
    appearance: Appearance
    params: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0

    def part_id(self, name: str) -> int:
        return self.part_names.index(name)

    def keypoint(self, name: str) -> ObjectKeypoint:
        for kp in self.keypoints:
            if kp.name == name:
                return kp
        raise KeyError(f"{self.instance_id} has no keypoint {name!r}")

    @property
    def keypoint_positions(self) -> np.ndarray:
        return np.array([kp.position for kp in self.keypoints], dtype=np.float64).reshape(-1, 3)

    def function_face_mask(self, function: str) -> np.ndarray:
        parts = {self.part_id(p) for p in self.functional_parts.get(function, ())}
        return np.isin(self.face_parts, list(parts))

    @property
    def extent(self) -> np.ndarray:
        return self.vertices.max(0) - self.vertices.min(0)

    @property
    def center(self) -> np.ndarray:
        return 0.5 * (self.vertices.max(0) + self.vertices.min(0))


@dataclass(frozen=True, eq=False)
class RenderedView:
    """One RGB-D view with every ground truth a benchmark needs."""

    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 metres (z), 0 on background
    mask: np.ndarray  # (H, W) bool, visible object pixels
    part_map: np.ndarray  # (H, W) int16, part id or -1
    face_map: np.ndarray  # (H, W) int32, triangle id or -1
    points_object: np.ndarray  # (H, W, 3) float32, object-frame surface point per pixel (NaN on background)
    intrinsics: CameraIntrinsics
    pose: np.ndarray  # (4, 4) object -> camera
    keypoints_xy: np.ndarray  # (K, 2) continuous pixel coordinates
    keypoints_depth: np.ndarray  # (K,) metres
    keypoints_visible: np.ndarray  # (K,) bool: in frame and not occluded
    seed: int = 0
    background: str = ""
