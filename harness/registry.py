"""Registries of named components: a decorator for built-ins, entry points for third-party plugins.

A plugin package declares e.g. `[project.entry-points."harness.methods"] my-method = "pkg.mod:MyMethod"`.
"""

from __future__ import annotations

from importlib.metadata import entry_points


class Registry:
    """Name -> class, filled by `@registry.register(name)` and the entry-point group `group`."""

    def __init__(self, kind: str, group: str):
        self.kind, self.group = kind, group
        self._items: dict[str, type] = {}
        self._plugins_loaded = False

    def register(self, name: str):
        def decorate(cls):
            if name in self._items and self._items[name] is not cls:
                raise ValueError(f"{self.kind} '{name}' is already registered by {self._items[name].__name__}")
            cls.name = name
            self._items[name] = cls
            return cls
        return decorate

    def _load_plugins(self) -> None:
        if not self._plugins_loaded:
            self._plugins_loaded = True
            for ep in entry_points(group=self.group):
                if ep.name not in self._items:
                    self.register(ep.name)(ep.load())

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self.names()

    def __getitem__(self, name: str) -> type:
        if name not in self:
            raise KeyError(f"unknown {self.kind} '{name}'; registered: {', '.join(self.names())}")
        return self._items[name]


methods = Registry("method", "harness.methods")


def register_method(name: str):
    """Decorator: `@register_method("simu") class SIMU(UnlearningMethod): ...`."""
    return methods.register(name)


def load_builtin_methods() -> None:
    """Import the built-in method modules so their decorators run."""
    import methods as _  # noqa: F401  (methods/__init__.py imports every built-in method)
