"""The SOCO benchmark: loader for the released layout, an evaluator that reproduces the released evaluation
(CC / SOC / Cross-SOC / SOC-geo; see ``docs/soco.md``), reductions, reports with the published rows."""
from .loader import Match, SocoKeypoint, SocoPair, SocoPairs, SocoView
from .protocol import PRESETS, VARIANTS, ProtocolSettings, preset, variant

__all__ = ["Match", "PRESETS", "ProtocolSettings", "SocoKeypoint", "SocoPair", "SocoPairs", "SocoView", "VARIANTS",
           "preset", "variant"]
