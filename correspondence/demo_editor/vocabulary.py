"""What a person may name: each category's taxonomy keypoints (concept + object-relative identity, as the matching
and the SOCO protocol use them) and the functions a functional demo can be made for."""
from __future__ import annotations

import functools
import json
from pathlib import Path

from ..taxonomy import Axis


@functools.lru_cache(maxsize=1)
def categories() -> list[dict]:
    """``[{name, supercategory, keypoints: [{name, concept, identity, mirror, description}]}]``, from the procedural
    families' taxonomy (the categories the benchmarks and the synthetic SOCO data use)."""
    from ..world.families import categories as specs, make_instance

    out = []
    for spec in specs():
        keypoints = []
        placed_keypoints = make_instance(spec.name, 0).keypoints
        names = {placed.name for placed in placed_keypoints}
        for placed in placed_keypoints:
            kp = placed.keypoint
            mirror = kp.mirrored(Axis.LEFT_RIGHT).name
            keypoints.append({"name": kp.name, "concept": kp.concept.name, "identity": kp.identity.as_dict(),
                              "mirror": mirror if mirror != kp.name and mirror in names else None,
                              "description": kp.describe(spec.name)})
        out.append({"name": spec.name, "supercategory": spec.supercategory, "keypoints": keypoints})
    return out


def functions(taxonomy_dir: str | Path | None = None) -> list[str]:
    """The project's function vocabulary (the families' functional parts) plus, when ``taxonomy_dir`` holds them,
    the actions of the functional taxonomy files (``*action2objects.json``: HANDAL, Objaverse)."""
    from ..world.families import categories as specs, make_instance

    names = {function for spec in specs() for function in make_instance(spec.name, 0).functional_parts}
    if taxonomy_dir is not None and Path(taxonomy_dir).is_dir():
        for path in sorted(Path(taxonomy_dir).rglob("*action2objects.json")):
            names.update(json.loads(path.read_text(encoding="utf-8")))
    return sorted(names)
