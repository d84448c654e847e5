"""Registries of named components, filled from entry-point groups: the built-ins and third-party plugins alike.

The built-ins are declared in this project's `pyproject.toml`, a plugin in its own, e.g.
`[project.entry-points."harness.methods"] my-method = "pkg.mod:MyMethod"`. An entry point is imported only
when its name is first looked up, so listing names (`harness run --help`) imports no method or benchmark.
`register(name)` adds a component at run time (notebooks) without an entry point, and `temporarily(name, cls)`
for the length of a `with` block (tests). Every component must subclass its registry's base class
(`UnlearningMethod`, `Benchmark`), checked when it is registered.
"""

from __future__ import annotations

import importlib
from contextlib import contextmanager
from importlib.metadata import entry_points


def load_entry_point(ep):
    """An entry point's object; one that no longer loads (an install older than the code: its entry points
    are read from the installed metadata) is one line saying which, and how to refresh them."""
    try:
        return ep.load()
    except (ImportError, AttributeError) as err:
        raise RuntimeError(
            f"entry point {ep.group} {ep.name} = {ep.value} does not load ({err}); if the code was "
            f"updated, reinstall it (pip install -e .) to refresh its entry points"
        ) from None


class Registry:
    """Name -> class: the entry-point group `group`, plus what `register(name)` adds in this process. `base`
    ("module:Class", imported only when a component is registered) is the class every component subclasses."""

    def __init__(self, kind: str, group: str, base: str):
        self.kind, self.group, self.base = kind, group, base
        self._items: dict[str, type] = {}
        self._entry_points: dict | None = None

    def _base(self) -> type:
        module, _, name = self.base.partition(":")
        return getattr(importlib.import_module(module), name)

    def register(self, name: str):
        """Decorator adding a class under `name` (its `name` attribute is set to it)."""

        def decorate(cls):
            if not (isinstance(cls, type) and issubclass(cls, self._base())):
                raise TypeError(
                    f"{self.kind} '{name}': {getattr(cls, '__name__', cls)} is not a subclass of "
                    f"{self.base.replace(':', '.')}"
                )
            if name in self._items and self._items[name] is not cls:
                raise ValueError(f"{self.kind} '{name}' is already registered by {self._items[name].__name__}")
            cls.name = name
            self._items[name] = cls
            return cls

        return decorate

    @contextmanager
    def temporarily(self, name: str, cls: type):
        """`cls` registered as `name` inside the block only (a test's toy component), then the registry as it
        was."""
        before = dict(self._items)
        self.register(name)(cls)
        try:
            yield cls
        finally:
            self._items = before

    def _declared(self) -> dict:
        if self._entry_points is None:
            self._entry_points = {ep.name: ep for ep in entry_points(group=self.group)}
        return self._entry_points

    def names(self) -> list[str]:
        return sorted(set(self._items) | set(self._declared()))

    def __contains__(self, name: str) -> bool:
        return name in self._items or name in self._declared()

    def __getitem__(self, name: str) -> type:
        if name not in self._items:
            if name not in self._declared():
                raise KeyError(f"unknown {self.kind} '{name}'; registered: {', '.join(self.names())}")
            self.register(name)(load_entry_point(self._declared()[name]))
        return self._items[name]


methods = Registry("method", "harness.methods", "methods.base:UnlearningMethod")
benchmarks = Registry("benchmark", "harness.benchmarks", "harness.benchmarks.base:Benchmark")
