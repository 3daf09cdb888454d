from __future__ import annotations

import pytest

from correspondence.errors import InputError
from correspondence.taxonomy import (Axis, Category, Concept, Identity, Keypoint, PartKind, parse_keypoint_name,
                                     shared_concepts, symmetric_grid)

WHEEL = Concept("wheel_center", "center point of the {identity} wheel")


def test_names_and_descriptions():
    kp = Keypoint(WHEEL, Identity.of(left_right="left", front_rear="front"))
    assert kp.name == "wheel_center/front-left"
    assert kp.describe("bus") == "Center point of the front left wheel of a bus"
    assert kp.describe("airplane").endswith("of an airplane")
    assert Keypoint(Concept("nose")).describe("cat") == "Nose of a cat"


def test_cc_and_soc_equivalence():
    front_left = Keypoint(WHEEL, Identity.of(front_rear="front", left_right="left"))
    rear_right = Keypoint(WHEEL, Identity.of(front_rear="rear", left_right="right"))
    assert front_left.same_concept(rear_right) and not front_left.same_identity(rear_right)
    assert front_left.mirrored().name == "wheel_center/front-right"
    assert front_left.mirrored(Axis.FRONT_REAR).name == "wheel_center/rear-left"


def test_parse_round_trip_and_errors():
    kp = parse_keypoint_name("wheel_center/front-left", {"wheel_center": WHEEL})
    assert kp == Keypoint(WHEEL, Identity.of(front_rear="front", left_right="left"))
    with pytest.raises(InputError, match="belongs to no axis"):
        parse_keypoint_name("wheel_center/sideways")
    with pytest.raises(InputError, match="two values"):
        parse_keypoint_name("wheel_center/left-right")
    with pytest.raises(InputError, match="not one of"):
        Identity.of(left_right="up")
    with pytest.raises(InputError, match="lower_snake_case"):
        Concept("Wheel Center")


def test_categories_share_concepts():
    wheels = symmetric_grid(WHEEL, [Axis.FRONT_REAR, Axis.LEFT_RIGHT])
    assert [k.name for k in wheels] == ["wheel_center/front-left", "wheel_center/front-right",
                                        "wheel_center/rear-left", "wheel_center/rear-right"]
    handle = Concept("handle_top", kind=PartKind.FUNCTIONAL)
    bus = Category("bus", "Transportation", wheels)
    car = Category("car", "Transportation", wheels + (Keypoint(handle),))
    assert shared_concepts(car, bus) == ("wheel_center",)
    assert car.keypoint("handle_top").concept.kind is PartKind.FUNCTIONAL
    with pytest.raises(InputError, match="has no keypoint"):
        bus.keypoint("mirror")
