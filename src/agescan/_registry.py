"""One registry type for models, detectors and privacy ops.

Each kind of component has one :class:`Registry` instance; CLI, service and tests enumerate it
instead of keeping their own lists. Registering only records a factory: nothing is loaded at import.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from agescan.errors import ModelNotFoundError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> factory mapping for one kind of component (e.g. "model", "detector")."""

    def __init__(self, kind: str):
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``factory`` under ``name`` (names are unique)."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"A {self.kind} named {name!r} is already registered.")
            self._factories[name] = factory
            return factory

        return deco

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def factory(self, name: str) -> Callable[..., T]:
        try:
            return self._factories[name]
        except KeyError:
            known = ", ".join(self.names()) or "(none)"
            raise ModelNotFoundError(
                f"No {self.kind} named {name!r} is registered. Known {self.kind}s: {known}. "
                f"List them with `agescan models`."
            ) from None

    def create(self, name: str, **kwargs) -> T:
        return self.factory(name)(**kwargs)
