import pytest

from harness import registry
from harness.registry import Registry


def test_decorator_registers_and_names_the_class():
    reg = Registry("method", "harness.test-none")

    @reg.register("toy")
    class Toy:
        pass

    assert reg["toy"] is Toy and Toy.name == "toy" and reg.names() == ["toy"]


def test_unknown_name_lists_registered_ones():
    registry.load_builtin_methods()
    with pytest.raises(KeyError, match="unknown method 'nope'; registered: .*fo-graddiff"):
        registry.methods["nope"]


def test_duplicate_name_is_an_error():
    reg = Registry("method", "harness.test-none")
    reg.register("a")(type("A", (), {}))
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(type("B", (), {}))


def test_entry_point_plugins_are_discovered(monkeypatch):
    class Plugin:
        pass

    class FakeEntryPoint:
        name = "plugin-method"

        def load(self):
            return Plugin

    seen = {}

    def fake_entry_points(group):
        seen["group"] = group
        return [FakeEntryPoint()]

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    reg = Registry("method", "harness.methods")
    assert reg["plugin-method"] is Plugin
    assert seen["group"] == "harness.methods"


def test_builtin_methods_are_registered():
    registry.load_builtin_methods()
    assert "fo-graddiff" in registry.methods.names()
