"""Part taxonomy: concepts, object-relative identities, keypoints, categories and super-categories.

SOCO separates *what* a point is (its concept, e.g. ``wheel_center``) from *which one* it is relative to the
object (its identity, e.g. front-left). Concept correspondence (CC) only asks for the concept; semantic object
correspondence (SOC) asks for both. Keeping the two apart in the types makes both tasks one comparison each.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable, Mapping

from .errors import InputError


class Axis(str, Enum):
    """An object-relative axis on which two instances of one concept can differ."""

    FRONT_REAR = "front_rear"
    TOP_BOTTOM = "top_bottom"
    INNER_OUTER = "inner_outer"
    LEFT_RIGHT = "left_right"


# Allowed values per axis, in the order they are spoken ("front left", not "left front").
AXIS_VALUES: dict[Axis, tuple[str, ...]] = {
    Axis.FRONT_REAR: ("front", "middle", "rear"),
    Axis.TOP_BOTTOM: ("top", "bottom"),
    Axis.INNER_OUTER: ("inner", "outer"),
    Axis.LEFT_RIGHT: ("left", "center", "right"),
}
_OPPOSITE = {"left": "right", "right": "left", "front": "rear", "rear": "front", "top": "bottom",
             "bottom": "top", "inner": "outer", "outer": "inner"}
_NAME_RE = re.compile(r"^[a-z0-9_]+$")


class PartKind(str, Enum):
    """SOCO distinguishes structural parts (a leg) from functional ones (a handle you grasp)."""

    STRUCTURAL = "structural"
    FUNCTIONAL = "functional"


@dataclass(frozen=True)
class Concept:
    """A kind of point shared by instances and often by categories (``wheel_center``, ``handle_top``).

    ``template`` phrases the point; ``{identity}`` is replaced by the spoken identity ("front left").
    """

    name: str
    template: str = ""
    kind: PartKind = PartKind.STRUCTURAL

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise InputError(f"concept name {self.name!r} must be lower_snake_case (letters, digits, '_')")

    def phrase(self, identity_words: str) -> str:
        if self.template:
            text = self.template.replace("{identity}", identity_words)
        else:
            text = f"{identity_words} {self.name.replace('_', ' ')}"
        return re.sub(r"\s+", " ", text).strip()


@dataclass(frozen=True)
class Identity:
    """Object-relative identity: a value per axis, e.g. ``{front_rear: front, left_right: left}``."""

    values: tuple[tuple[Axis, str], ...] = ()

    @staticmethod
    def of(mapping: Mapping[str, str] | None = None, **kwargs: str) -> "Identity":
        merged = dict(mapping or {}, **kwargs)
        items = []
        for key, value in merged.items():
            try:
                axis = Axis(key)
            except ValueError as exc:
                raise InputError(f"unknown identity axis {key!r}; expected one of {[a.value for a in Axis]}") from exc
            if value not in AXIS_VALUES[axis]:
                raise InputError(f"identity {key}={value!r} is not one of {AXIS_VALUES[axis]}")
            items.append((axis, value))
        order = list(Axis)
        return Identity(tuple(sorted(items, key=lambda item: order.index(item[0]))))

    def as_dict(self) -> dict[str, str]:
        return {axis.value: value for axis, value in self.values}

    @property
    def words(self) -> str:
        """Spoken form: ``front left``."""
        return " ".join(value for _, value in self.values)

    @property
    def slug(self) -> str:
        """Name form: ``front-left``."""
        return "-".join(value for _, value in self.values)

    def mirrored(self, axis: Axis = Axis.LEFT_RIGHT) -> "Identity":
        """The identity of the symmetric counterpart (left <-> right by default)."""
        return Identity(tuple((a, _OPPOSITE.get(v, v) if a == axis else v) for a, v in self.values))


@dataclass(frozen=True)
class Keypoint:
    """A named point of a category: a concept plus an identity. ``name`` is ``concept/identity``."""

    concept: Concept
    identity: Identity = field(default_factory=Identity)

    @property
    def name(self) -> str:
        return f"{self.concept.name}/{self.identity.slug}" if self.identity.values else self.concept.name

    def same_concept(self, other: "Keypoint") -> bool:
        return self.concept.name == other.concept.name

    def same_identity(self, other: "Keypoint") -> bool:
        """SOC equivalence: same concept *and* same object-relative identity."""
        return self.same_concept(other) and self.identity == other.identity

    def mirrored(self, axis: Axis = Axis.LEFT_RIGHT) -> "Keypoint":
        return Keypoint(self.concept, self.identity.mirrored(axis))

    def describe(self, category: str | "Category") -> str:
        """SOCO-style description: ``Center point of the front left wheel of a bus``."""
        category_name = category.name if isinstance(category, Category) else str(category)
        noun = category_name.replace("_", " ")
        article = "an" if noun[:1].lower() in "aeiou" else "a"
        text = f"{self.concept.phrase(self.identity.words)} of {article} {noun}"
        return text[:1].upper() + text[1:]


def parse_keypoint_name(name: str, concepts: Mapping[str, Concept] | None = None) -> Keypoint:
    """Parse ``wheel_center/front-left`` back into a :class:`Keypoint` (identity axes inferred from values)."""
    concept_name, _, slug = name.partition("/")
    concept = (concepts or {}).get(concept_name) or Concept(concept_name)
    identity: dict[str, str] = {}
    for word in filter(None, slug.split("-")):
        axis = next((a for a, values in AXIS_VALUES.items() if word in values), None)
        if axis is None:
            raise InputError(f"keypoint name {name!r}: identity word {word!r} belongs to no axis")
        if axis.value in identity:
            raise InputError(f"keypoint name {name!r}: two values on axis {axis.value}")
        identity[axis.value] = word
    return Keypoint(concept, Identity.of(identity))


@dataclass(frozen=True)
class Category:
    """An object category (``bus``) with its keypoint vocabulary and super-category."""

    name: str
    supercategory: str
    keypoints: tuple[Keypoint, ...] = ()

    def keypoint(self, name: str) -> Keypoint:
        for kp in self.keypoints:
            if kp.name == name:
                return kp
        raise InputError(f"category {self.name!r} has no keypoint {name!r}; it has {[k.name for k in self.keypoints]}")

    @property
    def concepts(self) -> tuple[Concept, ...]:
        seen: dict[str, Concept] = {}
        for kp in self.keypoints:
            seen.setdefault(kp.concept.name, kp.concept)
        return tuple(seen.values())


@dataclass(frozen=True)
class SuperCategory:
    """A group of categories that share concepts (Transportation, Hand-held, Furniture, Animals)."""

    name: str
    categories: tuple[str, ...]


def shared_concepts(a: Category, b: Category) -> tuple[str, ...]:
    """Concept names two categories share: the basis of cross-category correspondence."""
    names_b = {c.name for c in b.concepts}
    return tuple(c.name for c in a.concepts if c.name in names_b)


def symmetric_grid(concept: Concept, axes: Iterable[Axis]) -> tuple[Keypoint, ...]:
    """All identities of a concept over some axes, e.g. 4 wheels = front/rear x left/right (no centre values)."""
    combos: list[dict[str, str]] = [{}]
    for axis in axes:
        values = [v for v in AXIS_VALUES[axis] if v not in ("middle", "center")]
        combos = [dict(c, **{axis.value: v}) for c in combos for v in values]
    return tuple(Keypoint(concept, Identity.of(c)) for c in combos)
