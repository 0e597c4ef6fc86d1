"""A small name → factory registry; an unknown name lists the known ones."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Generic, TypeVar

from snnlth.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories. One instance per concept (models, datasets, surrogates)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return deco

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests register toy entries and take them back)."""
        del self._items[name]

    def get(self, name: str) -> T:
        if name not in self._items:
            raise ConfigError(unknown_name_message(self.kind, name, self.names()))
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {kind} {name!r}{hint}; choose one of: {', '.join(known)}"
