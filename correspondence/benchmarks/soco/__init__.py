"""The SOCO benchmark: loader for the released layout, faithful evaluator (CC / SOC / Cross-SOC / SOC-geo),
reductions, reports."""
from .loader import Match, SocoKeypoint, SocoPair, SocoPairs, SocoView
from .protocol import PRESETS, ProtocolSettings, preset

__all__ = ["Match", "PRESETS", "ProtocolSettings", "SocoKeypoint", "SocoPair", "SocoPairs", "SocoView", "preset"]
