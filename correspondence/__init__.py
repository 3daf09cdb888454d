"""soco_ros core library: dense features, correspondence and alignment, usable without ROS.

Quick start::

    from correspondence import match
    result = match("demo.jpg", "demo_keypoints.json", "live.jpg", backbone="auto")
    for m in result.matches:
        print(m.name, m.live_xy, m.score)
"""
from .api import Matcher, match
from .backbones import OutputKind, create_backbone, list_backbones
from .errors import SocoError
from .features import ExtractionSettings, FeatureExtractor, FeatureMap
from .keypoint_matching import KeypointMatch, MatchResult, MatchSettings

__version__ = "0.1.0"
__all__ = ["ExtractionSettings", "FeatureExtractor", "FeatureMap", "KeypointMatch", "MatchResult", "MatchSettings",
           "Matcher", "OutputKind", "SocoError", "create_backbone", "list_backbones", "match"]
