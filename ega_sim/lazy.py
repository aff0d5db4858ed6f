"""Names of a package loaded on first use (PEP 562), so importing one leaf of the package does
not pay for the heavy modules (pandas, scipy, matplotlib) behind its other names."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_getattr(package: str, exports: dict[str, str]) -> Callable[[str], object]:
    """A module `__getattr__` for `package` that imports `exports[name]` (a module path) when
    `name` is first asked for; AttributeError for any other name."""

    def __getattr__(name: str) -> object:  # noqa: N807 (PEP 562's name)
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    return __getattr__
