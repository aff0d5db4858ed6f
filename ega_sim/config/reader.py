"""Typed reading of one TOML table: every value is checked once, here, at the edge.

`TableReader` hands out values by key with their expected type and range and remembers which
keys it was asked for, so `finish()` can reject the keys nobody reads (typos, stale options).
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Any

from ega_sim.config.errors import ConfigError

_MISSING = object()
# A name that becomes a folder or file name: one path part, never `.`, `..` or hidden.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
SAFE_NAME_EXPECTED = (
    "a name of at most 100 letters, digits, '.', '_' and '-', starting with a letter or digit "
    "(it names folders and files)"
)


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a missing or malformed file is a ConfigError naming it."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(str(path), "<file>", "an existing TOML file", has_got=False) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(str(path), "<file>", "valid UTF-8 TOML", str(error)) from None


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


class TableReader:
    """Reads keys of one table of a TOML document, checking type and range as it goes."""

    def __init__(self, table: dict[str, Any], source: str, prefix: str = ""):
        if not isinstance(table, dict):
            raise ConfigError(source, prefix.rstrip(".") or "<root>", "a table", table)
        self.table = table
        self.source = source
        self.prefix = prefix
        self._read: set[str] = set()

    def key_name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def error(self, key: str, expected: str, got: Any = _MISSING) -> ConfigError:
        if got is _MISSING:
            return ConfigError(self.source, self.key_name(key), expected, has_got=False)
        return ConfigError(self.source, self.key_name(key), expected, _describe(got))

    def has(self, key: str) -> bool:
        return key in self.table

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self._read.add(key)
        if key in self.table:
            return self.table[key]
        if default is _MISSING:
            raise self.error(key, "a value (the key is required)")
        return default

    def float(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        min: float | None = None,
        max: float | None = None,
        min_exclusive: bool = False,
    ) -> float:
        value = self.raw(key, default)
        return self.check_float(key, value, min=min, max=max, min_exclusive=min_exclusive)

    def check_float(
        self,
        key: str,
        value: Any,
        *,
        min: float | None = None,
        max: float | None = None,
        min_exclusive: bool = False,
    ) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, "a number", value)
        value = float(value)
        if not math.isfinite(value):
            raise self.error(key, "a finite number", value)
        if min is not None and (value <= min if min_exclusive else value < min):
            raise self.error(key, f"a number {'>' if min_exclusive else '>='} {min}", value)
        if max is not None and value > max:
            raise self.error(key, f"a number <= {max}", value)
        return value

    def int(self, key: str, default: Any = _MISSING, *, min: int | None = None) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, "an integer", value)
        if min is not None and value < min:
            raise self.error(key, f"an integer >= {min}", value)
        return value

    def str(self, key: str, default: Any = _MISSING, *, choices: tuple[str, ...] = ()) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str):
            raise self.error(key, "a string", value)
        if choices and value not in choices:
            raise self.error(key, "one of " + ", ".join(repr(c) for c in choices), value)
        return value

    def safe_name(self, key: str, default: Any = _MISSING) -> str:
        """A string that is used as a folder or file name (SAFE_NAME): a name from a file
        must never lead a write out of its folder."""
        value = self.str(key, default)
        if not SAFE_NAME.fullmatch(value):
            raise self.error(key, SAFE_NAME_EXPECTED, value)
        return value

    def float_list(self, key: str, default: Any = _MISSING, *, min_length: int = 1) -> list[float]:
        value = self.raw(key, default)
        if not isinstance(value, list) or len(value) < min_length:
            raise self.error(key, f"a list of at least {min_length} number(s)", value)
        return [self.check_float(f"{key}[{i}]", item) for i, item in enumerate(value)]

    def table_reader(self, key: str, default: Any = _MISSING) -> TableReader:
        value = self.raw(key, default)
        if not isinstance(value, dict):
            raise self.error(key, "a table", value)
        return TableReader(value, self.source, prefix=f"{self.prefix}{key}.")

    def finish(self) -> None:
        """Reject keys that no one read: a typo must not pass silently as a default."""
        unknown = sorted(set(self.table) - self._read)
        if unknown:
            known = ", ".join(sorted(self._read)) or "none"
            raise self.error(unknown[0], f"a known key (known here: {known})", "unknown key")
