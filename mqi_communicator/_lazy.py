"""Names a package exports but imports on first use (PEP 562 module ``__getattr__``).

One home for the loader the top-level package, ``engine`` and ``intake`` share: a package
lists ``public name -> defining module`` and sets ``__getattr__ = lazy_getattr(...)``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_getattr"]


def lazy_getattr(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports each name when first asked.

    Args:
        package: The package's ``__name__``.
        names: Public name -> the module, relative to ``package``, that defines it.
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    return __getattr__
