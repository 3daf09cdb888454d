"""The procedural world: objects, exact ground truth and the SOCO writer."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED
from correspondence.world.families import categories, families, make_instance
from correspondence.world.groundtruth import (align_functional_parts, functional_correspondences, keypoint_pairs,
                                              same_object_correspondences)
from correspondence.world.objects import closest_surface_points
from correspondence.world.render import Renderer, RenderSettings, look_at_pose, sample_pose

SETTINGS = RenderSettings(width=160, height=160)


def test_families_and_categories():
    assert len(families()) >= 4 and len(categories()) >= 16
    for spec in categories():
        a, b = make_instance(spec.name, 0), make_instance(spec.name, 1)
        assert a.vertices.shape != b.vertices.shape or not np.allclose(a.vertices, b.vertices)
        assert a.appearance.part_colors != b.appearance.part_colors
        assert [k.name for k in a.keypoints] == [k.name for k in b.keypoints]  # one vocabulary per category
        again = make_instance(spec.name, 0)
        assert np.array_equal(a.vertices, again.vertices) and a.appearance == again.appearance


@pytest.mark.parametrize("category", [c.name for c in categories()])
def test_keypoints_sit_on_their_part(category):
    obj = make_instance(category, 2)
    points, _ = closest_surface_points(obj.vertices, obj.faces, obj.keypoint_positions)
    assert np.linalg.norm(points - obj.keypoint_positions, axis=1).max() < 1e-3
    for kp in obj.keypoints:
        # distance to the keypoint's own part is (near) zero, whatever other part touches it there
        own = obj.face_parts == obj.part_id(kp.part)
        used = np.unique(obj.faces[own])
        remap = -np.ones(len(obj.vertices), dtype=np.int64)
        remap[used] = np.arange(len(used))
        point, _ = closest_surface_points(obj.vertices[used], remap[obj.faces[own]], kp.position[None])
        assert np.linalg.norm(point[0] - kp.position) < 1e-3, f"{kp.name} is off its part {kp.part}"


# Parts a few millimetres thin (a rim seen edge-on, a blade's edge, a spout's lip) can fall between pixel centres
# (one ray per pixel, no anti-aliasing): their keypoints must land on the object, not necessarily on a pixel
# labelled with their part.
THIN_PARTS = {"rim", "edge", "mouth", "spout", "tip"}


@pytest.mark.parametrize("category", [c.name for c in categories()])
def test_reprojected_keypoints_land_on_their_part(category):
    from scipy.ndimage import distance_transform_edt
    obj = make_instance(category, 0)
    renderer = Renderer(obj)
    rng = np.random.default_rng(1)
    settings = RenderSettings(width=256, height=256)
    checked = 0
    for seed in range(5):
        view = renderer.render(sample_pose(rng, obj, intrinsics=settings.intrinsics), settings, seed=seed)
        for kp, xy, visible, z in zip(obj.keypoints, view.keypoints_xy, view.keypoints_visible, view.keypoints_depth):
            if not visible:
                continue
            col, row = int(np.floor(xy[0])), int(np.floor(xy[1]))
            target = view.mask if kp.part in THIN_PARTS else view.part_map == obj.part_id(kp.part)
            assert target.any() and distance_transform_edt(~target)[row, col] <= 1.5, f"{kp.name} at {xy}"
            window = (slice(max(row - 1, 0), row + 2), slice(max(col - 1, 0), col + 2))
            depths = view.depth[window][view.mask[window]]
            assert np.abs(depths - z).min() < 0.05 * z  # loose: a wheel seen edge-on changes depth fast per pixel
            checked += 1
    assert checked >= 5


def test_occluded_keypoints_are_invisible():
    mug = make_instance("mug", 0)
    pose = look_at_pose(np.array([0.5, 0.0, 0.2]), np.array([0.0, 0.0, 0.05]))  # in front, above: handle behind the body
    view = Renderer(mug).render(pose, SETTINGS, seed=0)
    names = [k.name for k in mug.keypoints]
    top = names.index("handle_top")
    xy = view.keypoints_xy[top]
    assert 0 <= xy[0] < SETTINGS.width and 0 <= xy[1] < SETTINGS.height  # in frame ...
    assert not view.keypoints_visible[top]  # ... but hidden by the body
    assert view.keypoints_visible[names.index("rim_point/front")]


def test_two_view_correspondences_agree_with_depth_within_a_pixel():
    obj = make_instance("kettle", 1)
    renderer = Renderer(obj)
    rng = np.random.default_rng(4)
    a = renderer.render(sample_pose(rng, obj, intrinsics=SETTINGS.intrinsics), SETTINGS, seed=1)
    b = renderer.render(sample_pose(rng, obj, azimuth_deg=(20, 60), intrinsics=SETTINGS.intrinsics), SETTINGS, seed=2)
    corr = same_object_correspondences(a, b, max_points=800, rng=rng)
    assert len(corr) > 50
    rows, cols = np.floor(corr.xy_b[:, 1]).astype(int), np.floor(corr.xy_b[:, 0]).astype(int)
    cam_b = b.intrinsics.unproject(corr.xy_b, b.depth[rows, cols])
    inv_b = np.linalg.inv(b.pose)
    obj_points = cam_b @ inv_b[:3, :3].T + inv_b[:3, 3]
    back = a.intrinsics.project(obj_points @ a.pose[:3, :3].T + a.pose[:3, 3])
    error = np.linalg.norm(back - corr.xy_a, axis=1)
    assert np.median(error) < 0.5 and np.percentile(error, 95) < 1.0


def test_functional_alignment_of_an_object_with_itself_is_identity():
    mug = make_instance("mug", 3)
    alignment = align_functional_parts(mug, mug, "pour-with", seed=0)
    assert alignment.fitness > 0.95 and alignment.scale == pytest.approx(1.0, abs=0.02)
    assert np.allclose(alignment.transform[:3, :3], np.eye(3), atol=0.05)


def test_functional_correspondences_connect_functional_pixels():
    a, b = make_instance("kettle", 0), make_instance("jug", 0)
    alignment = align_functional_parts(a, b, "pour-with", seed=0)
    assert alignment.fitness > 0.3
    pose = look_at_pose(np.array([0.45, 0.25, 0.35]), np.array([0.0, 0.0, 0.06]))
    view_a, view_b = Renderer(a).render(pose, SETTINGS, seed=0), Renderer(b).render(pose, SETTINGS, seed=1)
    corr = functional_correspondences(view_a, a, view_b, b, alignment, max_points=400)
    assert len(corr) > 10
    ids_a = [a.part_id(p) for p in a.functional_parts["pour-with"]]
    ids_b = [b.part_id(p) for p in b.functional_parts["pour-with"]]
    rows_a, cols_a = corr.rows_cols()[0].T
    rows_b, cols_b = corr.rows_cols()[1].T
    assert np.isin(view_a.part_map[rows_a, cols_a], ids_a).all()
    assert np.isin(view_b.part_map[rows_b, cols_b], ids_b).all()


def test_keypoint_pairs_cc_contains_soc():
    a, b = make_instance("car", 0), make_instance("bus", 0)
    pose = look_at_pose(np.array([0.5, 0.4, 0.3]), np.array([0.0, 0.0, 0.05]))
    va, vb = Renderer(a).render(pose, SETTINGS), Renderer(b).render(pose, SETTINGS)
    pairs = keypoint_pairs(a, va, b, vb)
    assert pairs.cross_category and pairs.soc
    cc_names = {n for _, src, _ in pairs.cc for n in src}
    assert set(pairs.soc) <= cc_names
    assert any(c == "wheel_center" and len(t) >= 2 for c, _, t in pairs.cc)  # several wheels: CC has a target set


def test_functional_parts_use_the_real_taxonomy():
    table_path = SHARED / "data" / "functional_taxonomy" / "objaverse" / "obj2part2function.json"
    if not table_path.is_file():
        pytest.skip(f"functional taxonomy not available: {table_path} is missing (../shared)")
    table = json.loads(table_path.read_text())
    vocabulary = {f for parts in table.values() for functions in parts.values() for f in functions}
    checked = 0
    for spec in categories():
        obj = make_instance(spec.name, 0)
        for function, parts in obj.functional_parts.items():
            assert function in vocabulary, f"{spec.name}: {function} is not in the 24-function vocabulary"
            if spec.name in table:
                for part in parts:
                    if part in table[spec.name]:
                        assert function in table[spec.name][part], f"{spec.name}.{part} does not afford {function}"
                        checked += 1
    assert checked >= 15


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_soco_dataset_schema_counts_and_determinism(tmp_path):
    from correspondence.world.synth import SynthConfig, synth_soco
    from correspondence.world.writers.soco import check_soco_dataset
    cats = ("car", "bus", "mug", "cup", "chair")
    config = dict(categories=cats, views=5, seed=3, size=128, pairs_per_category=6, cross_pairs_per_group=4,
                  progress=False)
    counts = synth_soco(SynthConfig(out=str(tmp_path / "a"), **config))
    synth_soco(SynthConfig(out=str(tmp_path / "b"), **config))
    assert check_soco_dataset(tmp_path / "a") == []
    digest_a, digest_b = _tree_digest(tmp_path / "a"), _tree_digest(tmp_path / "b")
    digest_a.pop("Metadata/generation.json")
    digest_b.pop("Metadata/generation.json")
    assert digest_a == digest_b  # same seed, identical files
    pairs = [json.loads(p.read_text()) for p in (tmp_path / "a" / "PairAnnotations").rglob("*.json")]
    assert counts["intra"] + counts["cross"] + counts["train"] + counts["test"] == len(pairs)
    assert len(list((tmp_path / "a" / "Images").rglob("*.JPEG"))) == counts["images"] == 25
    for pair in pairs:
        cc_sources = {n for m in pair["concept_matches"] for n in m["src_keypoints"]}
        assert set(pair["semantic_overlap"]) <= cc_sources  # every SOC match is also a CC match
        cross = pair["src_category"] != pair["trg_category"]
        assert pair["pair_group"] == (f"{pair['src_category']}-{pair['trg_category']}" if cross else pair["category"])
        assert isinstance(pair["pair_id"], int)
        assert (tmp_path / "a" / "Images" / pair["src_category"] / pair["src_image"]).is_file()
    assert any(p["src_category"] != p["trg_category"] and p["semantic_overlap"] for p in pairs)  # Cross-SOC exists
    broken = next((tmp_path / "a" / "PairAnnotations" / "intra").rglob("*.json"))
    record = json.loads(broken.read_text())
    record["src_keypoints"][0]["pos"] = [1e6, 0]
    del record["trg_bndbox"]
    broken.write_text(json.dumps(record))
    problems = check_soco_dataset(tmp_path / "a")
    assert any("trg_bndbox" in p for p in problems)


def test_user_mesh_round_trips_through_the_handal_writer(tmp_path):
    """A world object written as a HANDAL model (PLY in mm + part labels) loads back as a user object."""
    from correspondence.world.user_mesh import load_user_object
    from correspondence.world.writers.handal import write_handal_model
    hammer = make_instance("hammer", 1)
    ply = write_handal_model(tmp_path, "hammer", 1, hammer)
    labels_path = ply.with_name(ply.stem + "_parts.json")
    labels = json.loads(labels_path.read_text())
    labels.update(units="mm", category="hammer", functional_parts={"pound-with": ["face"]},
                  keypoints=[{"name": kp.name, "part": kp.part, "position": (kp.position * 1000).tolist(),
                              "identity": kp.keypoint.identity.as_dict()} for kp in hammer.keypoints])
    labels_path.write_text(json.dumps(labels))
    user = load_user_object(ply, labels_path)
    assert np.allclose(user.vertices, hammer.vertices, atol=1e-6) and np.array_equal(user.faces, hammer.faces)
    assert [k.name for k in user.keypoints] == [k.name for k in hammer.keypoints]
    pose = look_at_pose(np.array([0.2, 0.3, 0.4]), hammer.center)
    a, b = Renderer(hammer).render(pose, SETTINGS), Renderer(user).render(pose, SETTINGS)
    assert np.array_equal(a.mask, b.mask) and np.array_equal(a.part_map, b.part_map)
    labels["face_parts"] = labels["face_parts"][:-1]
    labels_path.write_text(json.dumps(labels))
    with pytest.raises(Exception, match="one integer per triangle"):
        load_user_object(ply, labels_path)


@pytest.mark.parametrize("kind", ["handal", "functional"])
def test_synth_handal_and_functional_pass_their_schema_checks(tmp_path, kind):
    from correspondence.cli import main
    from correspondence.world.writers.handal import check_handal_dataset
    from correspondence.world.writers.training import check_training_dataset
    out = tmp_path / kind
    code = main(["synth", kind, "--out", str(out), "--categories", "mug,kettle,jug,hammer", "--views", "3",
                 "--instances", "2", "--size", "96", "--no-progress"])
    assert code == 0
    problems = check_handal_dataset(out) if kind == "handal" else check_training_dataset(out)
    assert problems == []
    if kind == "handal":
        assert list((out / "functional_pairs" / "pour-with").iterdir())
    else:
        index = json.loads((out / "index.json").read_text())
        assert index["splits"]["train"] and index["splits"]["test"]
