"""Exceptions that carry a user-facing message.

The scheduler prints an ``EngineError`` as one clear line and exits non-zero instead of
dumping a traceback: these errors describe bad input (a config key, a registry name),
not a bug in engine.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class of errors caused by the user's input rather than by engine itself."""


class ConfigError(EngineError, ValueError):
    """A config value is missing, misspelled, of the wrong type or inconsistent."""


class RegistryError(EngineError, KeyError):
    """A registry lookup failed; the message lists the closest registered names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
