"""The error for bad configuration: it names the file, the key, what was expected and got."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A scenario or experiment file (or an argument standing for one) is malformed."""

    def __init__(self, source: str, key: str, expected: str, got: Any = None, *, has_got=True):
        self.source = source
        self.key = key
        self.expected = expected
        self.got = got
        got_text = f", got {got!r}" if has_got else ""
        super().__init__(f"{source}: key '{key}': expected {expected}{got_text}")
