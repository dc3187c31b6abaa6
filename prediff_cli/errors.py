"""User-facing errors: the CLI turns each into one line on stderr and a non-zero exit."""
from __future__ import annotations


class PrediffError(Exception):
    """Bad input or a failed operation the user can fix; its message is one line, shown as is."""

    exit_code = 1


class ConfigError(PrediffError):
    """Unknown config key, wrong type or value, unreadable config file."""

    exit_code = 2


class InputError(PrediffError):
    """An input file (radar HDF5, forecast NetCDF, checkpoint) is missing, malformed or inconsistent."""

    exit_code = 2


class DownloadError(PrediffError):
    """A dataset download or extraction failed; nothing half-written is left behind."""
