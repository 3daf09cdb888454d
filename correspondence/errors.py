"""Errors the library raises on purpose.

Every error a user can provoke (missing weights, a corrupt checkpoint, a bad image or keypoint file) is a
:class:`SocoError` with a message that names the file, the field or the setting at fault. The CLI maps them
to exit codes, so scripts can tell "fix your input" from "we crashed".
"""
from __future__ import annotations


class SocoError(Exception):
    """Base class of every error raised deliberately by soco_ros."""

    exit_code = 1


class InputError(SocoError, ValueError):
    """The caller passed data we cannot use (wrong shape, out-of-range keypoint, unreadable image...)."""

    exit_code = 1


class ConfigError(SocoError, ValueError):
    """An unknown backbone, setting or option value."""

    exit_code = 1


class WeightsNotFoundError(SocoError, FileNotFoundError):
    """Pretrained weights could not be found locally and could not be downloaded.

    Exit code 2, as for every "the environment lacks something" condition, so pipelines can fall back.
    """

    exit_code = 2


class CorruptCheckpointError(SocoError):
    """A checkpoint file exists but cannot be read or does not fit the architecture."""

    exit_code = 2


class MissingDependencyError(SocoError, ImportError):
    """An optional package (open3d, onnxruntime, tensorrt...) is needed for this call but not installed."""

    exit_code = 2


class DeviceError(ConfigError):
    """The requested device does not exist here (no CUDA, an index past the last GPU, CUDA graphs on a CPU)."""

    exit_code = 1
