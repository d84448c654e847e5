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
        loaded = 0

        def load(self):
            FakeEntryPoint.loaded += 1
            return Plugin

    seen = {}

    def fake_entry_points(group):
        seen["group"] = group
        return [FakeEntryPoint()]

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    reg = Registry("method", "harness.methods")
    assert reg.names() == ["plugin-method"] and FakeEntryPoint.loaded == 0   # listing names imports nothing
    assert reg["plugin-method"] is Plugin and Plugin.name == "plugin-method"
    assert seen["group"] == "harness.methods" and FakeEntryPoint.loaded == 1


def test_builtins_are_registered_through_their_entry_points():
    assert {"fo-graddiff", "so-graddiff", "simu"} <= set(registry.methods.names())
    assert {"tofu-mini", "tofu", "lume-mini", "lume"} <= set(registry.benchmarks.names())
    assert registry.methods["simu"].name == "simu" and registry.benchmarks["lume"].name == "lume"
