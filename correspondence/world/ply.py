"""Triangle-mesh PLY files: a binary writer and a reader for ASCII and binary PLY (as BOP/HANDAL models ship),
with optional per-face part labels from a ``<stem>_parts.json`` sidecar. Its own module because the HANDAL writer
and loader and user meshes all read meshes, and none of them should own the format."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .writers.schema import describe, is_int, load_json


_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


@dataclass(frozen=True)
class PlyModel:
    """A triangle mesh read from a PLY file; part labels come from the ``<stem>_parts.json`` sidecar if present."""

    vertices: np.ndarray  # (V, 3) float64 metres
    faces: np.ndarray  # (F, 3) int64 (polygons are fan-triangulated)
    colors: np.ndarray | None  # (V, 3) uint8
    path: Path
    part_names: tuple[str, ...] | None = None
    face_parts: np.ndarray | None = None  # (F,) int16


def write_ply(path: str | Path, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray) -> Path:
    """Binary little-endian PLY with float x/y/z, uchar red/green/blue and triangle ``vertex_indices``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "\n".join(["ply", "format binary_little_endian 1.0", "comment soco_ros procedural object, millimetres",
                        f"element vertex {len(vertices)}", "property float x", "property float y",
                        "property float z", "property uchar red", "property uchar green", "property uchar blue",
                        f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]) + "\n"
    v = np.empty(len(vertices), np.dtype([("p", "<f4", (3,)), ("c", "u1", (3,))]))
    v["p"], v["c"] = vertices, colors
    f = np.empty(len(faces), np.dtype([("n", "u1"), ("i", "<i4", (3,))]))
    f["n"], f["i"] = 3, faces
    path.write_bytes(header.encode("ascii") + v.tobytes() + f.tobytes())
    return path


def _ply_header(data: bytes, path: Path) -> tuple[str, list[tuple[str, int, list[tuple[str, str, str | None]]]], int]:
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise InputError(f"{str(path)!r} is not a PLY file (no 'ply' magic or no 'end_header')")
    newline = data.find(b"\n", end)
    offset = len(data) if newline < 0 else newline + 1
    fmt, elements = "", []
    for line in data[:end].decode("ascii", errors="replace").splitlines()[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        try:
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                elements.append((words[1], int(words[2]), []))
            elif words[0] == "property" and words[1] == "list":
                elements[-1][2].append((words[4], _PLY_TYPES[words[3]], _PLY_TYPES[words[2]]))
            elif words[0] == "property":
                elements[-1][2].append((words[2], _PLY_TYPES[words[1]], None))
        except (IndexError, KeyError, ValueError) as exc:
            raise InputError(f"{str(path)!r}: malformed PLY header line {line!r}") from exc
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise InputError(f"{str(path)!r}: unsupported PLY format {fmt!r}")
    return fmt, elements, offset


def _read_element(stream: np.ndarray | bytes, pos: int, count: int, props: list, endian: str | None,
                  path: Path) -> tuple[dict[str, Any], int]:
    """Read one element block. ``endian`` None means ASCII (``stream`` is a flat float array)."""
    ascii_ = endian is None
    size = (lambda t: 1) if ascii_ else (lambda t: np.dtype(t).itemsize)  # noqa: E731

    def scalar(t: str, at: int) -> float:
        if at + size(t) > len(stream):
            raise InputError(f"{str(path)!r}: PLY data is truncated")
        return float(stream[at]) if ascii_ else np.frombuffer(stream, endian + t, 1, at)[0]

    # The first row's list lengths give a fixed layout; every row is checked against it, else read row by row.
    layout, at = [], pos
    for name, t, ct in props:
        n = None if ct is None or count == 0 else int(scalar(ct, at))
        layout.append((name, t, ct, n))
        at += size(t) if ct is None else size(ct) + (n or 0) * size(t)
    row = at - pos
    if count == 0 or pos + row * count <= len(stream):
        if ascii_:
            block = stream[pos:pos + row * count].reshape(count, row) if count else np.zeros((0, row))
            cols, out, c = [], {}, 0
            for name, t, ct, n in layout:
                if ct is not None:
                    cols.append(block[:, c] == n)
                    c += 1
                width = 1 if ct is None else (n or 0)
                out[name] = block[:, c] if ct is None else block[:, c:c + width]
                c += width
        else:
            fields = []
            for name, t, ct, n in layout:
                if ct is not None:
                    fields.append((f"__n_{name}", endian + ct))
                fields.append((name, endian + t) if ct is None else (name, endian + t, (n or 0,)))
            block = np.frombuffer(stream, np.dtype(fields), count, pos)
            cols = [block[f"__n_{name}"] == n for name, _, ct, n in layout if ct is not None]
            out = {name: block[name] for name, *_ in layout}
        if all(col.all() for col in cols):
            return out, pos + row * count
    out = {name: [] for name, *_ in props}
    at = pos
    for _ in range(count):  # ragged lists (mixed polygons): slow path
        for name, t, ct in props:
            if ct is None:
                out[name].append(scalar(t, at))
                at += size(t)
            else:
                n = int(scalar(ct, at))
                at += size(ct)
                out[name].append(np.array([scalar(t, at + k * size(t)) for k in range(n)]))
                at += n * size(t)
    return out, at


def read_ply_model(path: str | Path, unit_to_m: float = 0.001) -> PlyModel:
    """Vertices (converted to metres; BOP models are in millimetres), triangles and per-vertex colours of a PLY
    file (ASCII or binary); reads the ``_parts.json`` sidecar so part-labelled user meshes load as ours do."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"PLY model {str(path)!r} does not exist")
    data = path.read_bytes()
    fmt, elements, offset = _ply_header(data, path)
    if fmt == "ascii":
        try:
            stream: Any = np.array(data[offset:].split(), dtype=np.float64)
        except ValueError as exc:
            raise InputError(f"{str(path)!r}: PLY body has a non-numeric value") from exc
        endian, offset = None, 0  # positions now count values, not bytes
    else:
        stream, endian = data, "<" if fmt == "binary_little_endian" else ">"
    values, types = {}, {}
    for name, count, props in elements:
        values[name], offset = _read_element(stream, offset, count, props, endian, path)
        types[name] = {p[0]: p[1] for p in props}
    vertex = values.get("vertex", {})
    if not all(k in vertex for k in "xyz"):
        raise InputError(f"{str(path)!r}: PLY has no vertex element with x, y, z")
    vertices = np.stack([np.asarray(vertex[k], dtype=np.float64) for k in "xyz"], 1) * unit_to_m
    colors = None
    for names in (("red", "green", "blue"), ("diffuse_red", "diffuse_green", "diffuse_blue")):
        if all(k in vertex for k in names):
            rgb = np.stack([np.asarray(vertex[k], dtype=np.float64) for k in names], 1)
            rgb = rgb * 255 if types["vertex"][names[0]].startswith("f") else rgb
            colors = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
            break
    face = values.get("face", {})
    key = next((k for k in ("vertex_indices", "vertex_index") if k in face), None)
    if key is None:
        raise InputError(f"{str(path)!r}: PLY has no face element with 'vertex_indices'")
    polygons = face[key]
    if isinstance(polygons, np.ndarray) and polygons.ndim == 2 and polygons.shape[1] == 3:
        faces = polygons.astype(np.int64)
    else:
        tris = []
        for i, poly in enumerate(polygons):
            if len(poly) < 3:
                raise InputError(f"{str(path)!r}: face {i} has {len(poly)} vertices (need at least 3)")
            tris.extend((poly[0], poly[k], poly[k + 1]) for k in range(1, len(poly) - 1))
        faces = np.asarray(tris, dtype=np.int64).reshape(-1, 3)
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise InputError(f"{str(path)!r}: face vertex_indices out of range [0, {len(vertices)})")
    part_names, face_parts = _read_parts(path.with_name(path.stem + "_parts.json"), len(faces))
    return PlyModel(vertices, faces, colors, path, part_names, face_parts)


def _read_parts(path: Path, n_faces: int) -> tuple[tuple[str, ...] | None, np.ndarray | None]:
    if not path.exists():
        return None, None
    data = load_json(path, "part label file")
    names = data.get("part_names") if isinstance(data, dict) else None
    parts = data.get("face_parts") if isinstance(data, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InputError(f"{str(path)!r}: field 'part_names' must be a list of strings")
    if not isinstance(parts, list) or len(parts) != n_faces or not all(is_int(p) for p in parts):
        raise InputError(f"{str(path)!r}: field 'face_parts' must be {n_faces} integers (one per face), "
                         f"got {describe(parts)}")
    if parts and (min(parts) < 0 or max(parts) >= len(names)):
        raise InputError(f"{str(path)!r}: field 'face_parts' has ids outside [0, {len(names)})")
    return tuple(names), np.asarray(parts, dtype=np.int16)
