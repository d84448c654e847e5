"""Registries of named components, filled from entry-point groups: the built-ins and third-party plugins alike.

The built-ins are declared in this project's `pyproject.toml`, a plugin in its own, e.g.
`[project.entry-points."harness.methods"] my-method = "pkg.mod:MyMethod"`. An entry point is imported only
when its name is first looked up, so listing names (`harness run --help`) imports no method or benchmark.
`register(name)` adds a component at run time (tests, notebooks) without an entry point.
"""

from __future__ import annotations

from importlib.metadata import entry_points


class Registry:
    """Name -> class: the entry-point group `group`, plus what `register(name)` adds in this process."""

    def __init__(self, kind: str, group: str):
        self.kind, self.group = kind, group
        self._items: dict[str, type] = {}
        self._entry_points: dict | None = None

    def register(self, name: str):
        """Decorator adding a class under `name` (its `name` attribute is set to it)."""
        def decorate(cls):
            if name in self._items and self._items[name] is not cls:
                raise ValueError(f"{self.kind} '{name}' is already registered by {self._items[name].__name__}")
            cls.name = name
            self._items[name] = cls
            return cls
        return decorate

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
            self.register(name)(self._declared()[name].load())
        return self._items[name]


methods = Registry("method", "harness.methods")
benchmarks = Registry("benchmark", "harness.benchmarks")
