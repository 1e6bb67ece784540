"""A tiny name -> builder registry (the timm ``register_model`` / ``create_model`` pattern).

Every swappable component (datasets, backbone weight sources, losses, later language encoders) is
built from its name through one of these, never by matching substrings of names.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import Any

from langdml_core.errors import UnknownNameError


def suggest(name: str, known: list[str] | tuple[str, ...]) -> str:
    """Return ' (did you mean X?)' for the closest known name, or ''."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Registry:
    """Maps names to builders for one kind of component."""

    def __init__(self, kind: str):
        self.kind = kind
        self._builders: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: ``@LOSSES.register("margin")`` above a builder function or class."""

        def decorator(builder: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._builders:
                raise ValueError(f"{self.kind} {name!r} is already registered.")
            self._builders[name] = builder
            return builder

        return decorator

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._builders:
            raise UnknownNameError(
                f"Unknown {self.kind} {name!r}{suggest(name, self.names())}; "
                f"expected one of: {', '.join(self.names())}."
            )
        return self._builders[name]

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.get(name)(*args, **kwargs)

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._builders if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._builders

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
