"""Lazy package attributes (PEP 562), shared by the packages whose heavy parts load on demand.

A package lists which private module defines each public name; `import quarch.models` then
costs only the package file, and `from quarch.models import ModelSpec` imports `_spec` alone.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(
    package: str, homes: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The `__getattr__` and `__dir__` of `package`, which names come from the modules `homes`
    maps them to; a loaded name is stored in `namespace` (the package's globals) so it is looked
    up once."""

    def __getattr__(name: str) -> Any:
        module = homes.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(homes)

    return __getattr__, __dir__
