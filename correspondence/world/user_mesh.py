"""Load a user's mesh (PLY/OBJ, e.g. a HANDAL model) with a part-label file, so the world's renderer, ground
truth and writers work on real assets.

Part-label file (JSON)::

    {"category": "hammer", "units": "mm",                      # mm (BOP/HANDAL models) or m
     "part_names": ["handle", "head", "face"],
     "face_parts": [0, 0, 1, ...],                             # one part index per triangle, in file order
     "functional_parts": {"pound-with": ["face"]},            # optional
     "keypoints": [{"name": "face_center", "part": "face",    # optional, object frame, same units
                    "position": [x, y, z], "identity": {}}]}
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..optional import require
from ..taxonomy import Concept, Identity, Keypoint
from .objects import closest_surface_points
from .types import Appearance, ObjectInstance, ObjectKeypoint

UNITS = {"m": 1.0, "mm": 1e-3, "cm": 1e-2}


def _read_mesh(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    o3d = require("open3d", "loading meshes")
    if not path.is_file():
        raise InputError(f"mesh file {str(path)!r} does not exist")
    mesh = o3d.io.read_triangle_mesh(str(path))
    vertices, faces = np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.triangles, dtype=np.int32)
    if len(vertices) == 0 or len(faces) == 0:
        raise InputError(f"mesh file {str(path)!r} has no triangles (is it a PLY/OBJ triangle mesh?)")
    colors = np.asarray(mesh.vertex_colors, dtype=np.float64) if mesh.has_vertex_colors() else None
    return vertices, faces, colors


def load_user_object(mesh_path: str | Path, labels_path: str | Path, instance_id: str | None = None,
                     snap_tolerance: float = 0.005) -> ObjectInstance:
    """An :class:`ObjectInstance` from a mesh and its part labels (metres, object frame as in the file)."""
    mesh_path, labels_path = Path(mesh_path), Path(labels_path)
    vertices, faces, colors = _read_mesh(mesh_path)
    try:
        labels = json.loads(labels_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"part-label file {str(labels_path)!r} does not exist") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"part-label file {str(labels_path)!r} is not valid JSON: {exc}") from exc
    where = str(labels_path)
    units = labels.get("units", "m")
    if units not in UNITS:
        raise InputError(f"{where}: units must be one of {sorted(UNITS)}, got {units!r}")
    vertices = vertices * UNITS[units]
    part_names = labels.get("part_names")
    face_parts = np.asarray(labels.get("face_parts", []))
    if not isinstance(part_names, list) or not part_names or not all(isinstance(p, str) for p in part_names):
        raise InputError(f"{where}: part_names must be a non-empty list of names")
    if face_parts.shape != (len(faces),) or not np.issubdtype(face_parts.dtype, np.integer):
        raise InputError(f"{where}: face_parts must hold one integer per triangle ({len(faces)} in "
                         f"{mesh_path.name}), got shape {face_parts.shape}")
    if face_parts.min() < 0 or face_parts.max() >= len(part_names):
        raise InputError(f"{where}: face_parts values must index part_names (0..{len(part_names) - 1})")
    functional = {str(k): tuple(v) for k, v in (labels.get("functional_parts") or {}).items()}
    for function, parts in functional.items():
        unknown = [p for p in parts if p not in part_names]
        if unknown:
            raise InputError(f"{where}: functional_parts[{function!r}] names unknown parts {unknown}")
    keypoints = []
    for i, entry in enumerate(labels.get("keypoints") or []):
        try:
            name, part = entry["name"], entry["part"]
            position = np.asarray(entry["position"], dtype=np.float64) * UNITS[units]
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{where}: keypoints[{i}] needs name, part and position [x, y, z] ({exc})") from exc
        if part not in part_names or position.shape != (3,):
            raise InputError(f"{where}: keypoints[{i}] part {part!r} unknown or position not 3 numbers")
        snapped, _ = closest_surface_points(vertices, faces, position[None])
        if np.linalg.norm(snapped[0] - position) > snap_tolerance:
            raise InputError(f"{where}: keypoints[{i}] ({name}) is {np.linalg.norm(snapped[0] - position) * 1e3:.1f} "
                             f"mm from the surface")
        concept = Concept(entry.get("concept", name.split("/")[0]))
        keypoints.append(ObjectKeypoint(Keypoint(concept, Identity.of(entry.get("identity") or {})), snapped[0], part))
    part_colors = {}
    for index, part in enumerate(part_names):
        used = np.unique(faces[face_parts == index])
        rgb = colors[used].mean(0) if colors is not None and len(used) else np.array([0.6, 0.6, 0.6])
        part_colors[part] = tuple(float(c) for c in rgb)
    category = str(labels.get("category", mesh_path.stem))
    return ObjectInstance(instance_id or mesh_path.stem, category, "user", vertices, faces,
                          face_parts.astype(np.int16), tuple(part_names), tuple(keypoints), functional,
                          Appearance(part_colors), {"source": str(mesh_path)}, 0)
