"""Part-labelled triangle-mesh building blocks (boxes, frusta, tubes, ellipsoids, torus arcs, extrusions).

Every primitive is appended to a :class:`MeshBuilder` under a part name, so each triangle knows which part it
belongs to: that label is what makes part maps, functional masks and keypoint checks exact.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def rotation_to(axis: np.ndarray) -> np.ndarray:
    """A rotation taking +z onto ``axis`` (unit)."""
    z = np.asarray(axis, dtype=np.float64)
    z = z / np.linalg.norm(z)
    helper = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z], 1)


def rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def rot_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1.0, 0], [-s, 0, c]])


def rot_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def _unit_ring(segments: int, scale_xy: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """``segments`` points on the (elliptic) unit circle in the local xy plane."""
    angles = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    return np.stack([np.cos(angles) * scale_xy[0], np.sin(angles) * scale_xy[1], np.zeros_like(angles)], 1)


def _band_faces(segments: int) -> list[tuple[int, int, int]]:
    """Triangles joining ring ``0..n-1`` to ring ``n..2n-1`` (a cylinder's side, a rim annulus)."""
    faces = []
    for i in range(segments):
        j = (i + 1) % segments
        faces += [(i, j, segments + j), (i, segments + j, segments + i)]
    return faces


@dataclass
class MeshBuilder:
    vertices: list[np.ndarray] = field(default_factory=list)
    faces: list[np.ndarray] = field(default_factory=list)
    parts: list[np.ndarray] = field(default_factory=list)
    part_names: list[str] = field(default_factory=list)
    _count: int = 0

    def part_index(self, name: str) -> int:
        if name not in self.part_names:
            self.part_names.append(name)
        return self.part_names.index(name)

    def add(self, vertices: np.ndarray, faces: np.ndarray, part: str) -> None:
        vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
        faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
        self.vertices.append(vertices)
        self.faces.append(faces + self._count)
        self.parts.append(np.full(len(faces), self.part_index(part), dtype=np.int16))
        self._count += len(vertices)

    def build(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
        return (np.concatenate(self.vertices), np.concatenate(self.faces).astype(np.int32),
                np.concatenate(self.parts), tuple(self.part_names))

    # ---- primitives -------------------------------------------------------------------------------------------
    def box(self, part: str, center, size, rotation: np.ndarray | None = None) -> None:
        """Axis-aligned (then rotated) box, outward-facing triangles."""
        hx, hy, hz = np.asarray(size, dtype=np.float64) / 2
        corners = np.array([[x, y, z] for x in (-hx, hx) for y in (-hy, hy) for z in (-hz, hz)])
        quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
        faces = [f for a, b, c, d in quads for f in ((a, b, c), (a, c, d))]
        rotation = np.eye(3) if rotation is None else rotation
        self.add(corners @ rotation.T + np.asarray(center), faces, part)

    def frustum(self, part: str, p0, p1, r0: float, r1: float, segments: int = 24, cap0: bool = True,
                cap1: bool = True, scale_xy: tuple[float, float] = (1.0, 1.0), cap_parts: tuple[str, str] | None = None
                ) -> None:
        """Cylinder/cone from ``p0`` (radius r0) to ``p1`` (radius r1); elliptic with ``scale_xy``."""
        p0, p1 = np.asarray(p0, dtype=np.float64), np.asarray(p1, dtype=np.float64)
        axis = p1 - p0
        rotation = rotation_to(axis)
        ring = _unit_ring(segments, scale_xy)
        bottom = p0 + (ring * r0) @ rotation.T
        top = p1 + (ring * r1) @ rotation.T
        verts = np.concatenate([bottom, top])
        faces = _band_faces(segments)
        self.add(verts, faces, part)
        cap_parts = cap_parts or (part, part)
        if cap0 and r0 > 0:
            self.disk(cap_parts[0], p0, -axis, r0, segments, scale_xy, rotation)
        if cap1 and r1 > 0:
            self.disk(cap_parts[1], p1, axis, r1, segments, scale_xy, rotation)

    def disk(self, part: str, center, normal, radius: float, segments: int = 24,
             scale_xy: tuple[float, float] = (1.0, 1.0), rotation: np.ndarray | None = None) -> None:
        center = np.asarray(center, dtype=np.float64)
        rotation = rotation_to(normal) if rotation is None else rotation
        ring = _unit_ring(segments, scale_xy)
        verts = np.concatenate([center[None], center + (ring * radius) @ rotation.T])
        outward = np.dot(rotation[:, 2], np.asarray(normal, dtype=np.float64)) > 0
        faces = [(0, 1 + i, 1 + (i + 1) % segments) if outward else (0, 1 + (i + 1) % segments, 1 + i)
                 for i in range(segments)]
        self.add(verts, faces, part)

    def tube(self, part: str, p0, p1, r_outer0: float, r_outer1: float, thickness: float, segments: int = 32,
             rim_part: str | None = None, bottom: bool = True, bottom_part: str | None = None,
             scale_xy: tuple[float, float] = (1.0, 1.0), inner_part: str | None = None) -> None:
        """An open-topped vessel wall: outer and inner surfaces joined by a rim ring (and an optional floor)."""
        p0, p1 = np.asarray(p0, dtype=np.float64), np.asarray(p1, dtype=np.float64)
        axis_dir = (p1 - p0) / np.linalg.norm(p1 - p0)
        self.frustum(part, p0, p1, r_outer0, r_outer1, segments, cap0=bottom, cap1=False, scale_xy=scale_xy,
                     cap_parts=(bottom_part or part, part))
        inner0 = p0 + axis_dir * thickness
        ri0, ri1 = max(r_outer0 - thickness, 1e-4), max(r_outer1 - thickness, 1e-4)
        self.frustum(inner_part or part, inner0, p1, ri0, ri1, segments, cap0=bottom, cap1=False, scale_xy=scale_xy,
                     cap_parts=(inner_part or part, part))
        rotation = rotation_to(p1 - p0)
        ring = _unit_ring(segments, scale_xy)
        outer = p1 + (ring * r_outer1) @ rotation.T
        inner = p1 + (ring * ri1) @ rotation.T
        verts = np.concatenate([outer, inner])
        faces = _band_faces(segments)
        self.add(verts, faces, rim_part or part)

    def ellipsoid(self, part: str, center, radii, rotation: np.ndarray | None = None, rows: int = 12,
                  cols: int = 24) -> None:
        theta = np.linspace(0, np.pi, rows + 1)
        phi = np.linspace(0, 2 * np.pi, cols, endpoint=False)
        t, p = np.meshgrid(theta, phi, indexing="ij")
        unit = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], -1).reshape(-1, 3)
        rotation = np.eye(3) if rotation is None else rotation
        verts = (unit * np.asarray(radii)) @ rotation.T + np.asarray(center)
        faces = []
        for r in range(rows):
            for c in range(cols):
                a, b = r * cols + c, r * cols + (c + 1) % cols
                d, e = (r + 1) * cols + c, (r + 1) * cols + (c + 1) % cols
                faces += [(a, d, e), (a, e, b)]
        self.add(verts, faces, part)

    def torus_arc(self, part: str, center, major: float, minor: float, start: float, stop: float,
                  rotation: np.ndarray | None = None, segments: int = 20, sides: int = 10) -> None:
        """A torus section in the local xz plane (angles from +x towards +z), e.g. a mug handle."""
        u = np.linspace(start, stop, segments + 1)
        v = np.linspace(0, 2 * np.pi, sides, endpoint=False)
        uu, vv = np.meshgrid(u, v, indexing="ij")
        x = (major + minor * np.cos(vv)) * np.cos(uu)
        z = (major + minor * np.cos(vv)) * np.sin(uu)
        y = minor * np.sin(vv)
        rotation = np.eye(3) if rotation is None else rotation
        verts = np.stack([x, y, z], -1).reshape(-1, 3) @ rotation.T + np.asarray(center)
        faces = []
        for i in range(segments):
            for j in range(sides):
                a, b = i * sides + j, i * sides + (j + 1) % sides
                c, d = (i + 1) * sides + j, (i + 1) * sides + (j + 1) % sides
                faces += [(a, c, d), (a, d, b)]
        self.add(verts, faces, part)
        for angle, flip in ((start, True), (stop, False)):  # close the ends
            centre = np.array([major * np.cos(angle), 0.0, major * np.sin(angle)]) @ rotation.T + np.asarray(center)
            tangent = np.array([-np.sin(angle), 0.0, np.cos(angle)]) @ rotation.T
            self.disk(part, centre, -tangent if flip else tangent, minor, sides)

    def extrude(self, part: str, polygon_xy: np.ndarray, thickness: float, rotation: np.ndarray | None = None,
                offset=(0.0, 0.0, 0.0), edge_part: str | None = None, edge_mask: np.ndarray | None = None) -> None:
        """Extrude a convex-ish 2D polygon (local xy, counter-clockwise) along local z by ``thickness``.

        ``edge_mask[i]`` marks polygon edge i (vertex i -> i+1) as ``edge_part`` (a blade's cutting edge)."""
        poly = np.asarray(polygon_xy, dtype=np.float64)
        n = len(poly)
        rotation = np.eye(3) if rotation is None else rotation
        lower = np.column_stack([poly, np.full(n, -thickness / 2)])
        upper = np.column_stack([poly, np.full(n, thickness / 2)])
        transform = lambda v: v @ rotation.T + np.asarray(offset)  # noqa: E731
        centroid = poly.mean(0)
        cap_lo = np.vstack([[*centroid, -thickness / 2], lower])
        cap_hi = np.vstack([[*centroid, thickness / 2], upper])
        self.add(transform(cap_lo), [(0, 1 + (i + 1) % n, 1 + i) for i in range(n)], part)
        self.add(transform(cap_hi), [(0, 1 + i, 1 + (i + 1) % n) for i in range(n)], part)
        for i in range(n):
            j = (i + 1) % n
            quad = np.array([lower[i], lower[j], upper[j], upper[i]])
            target = edge_part if (edge_part and edge_mask is not None and edge_mask[i]) else part
            self.add(transform(quad), [(0, 1, 2), (0, 2, 3)], target)
