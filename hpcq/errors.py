"""Errors that name the bad value and the fix.

Every user-facing failure in hpcq raises one of these, so the CLI can print the message without a traceback.
"""


class HpcqError(Exception):
    """Base class: the message says what was wrong and how to fix it."""


class ConfigError(HpcqError, ValueError):
    """A configuration value, argument or input shape is invalid."""


class DataError(HpcqError, ValueError):
    """A data file is missing, malformed or inconsistent with the configuration."""


class MissingDependencyError(HpcqError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""

    def __init__(self, package: str, extra: str, purpose: str):
        super().__init__(
            f"{purpose} needs the Python package '{package}', which is not installed. "
            f"Install it with: pip install 'hpcq[{extra}]'"
        )
        self.package = package
        self.extra = extra


class ResourceError(HpcqError, MemoryError):
    """A job would not fit in the memory (or devices) available; the message names what would fit."""
