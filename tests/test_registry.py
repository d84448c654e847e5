import pytest

from harness import registry
from harness.registry import Registry


def test_decorator_registers_and_names_the_class():
    reg = Registry("method", "harness.test-none", "builtins:object")

    @reg.register("toy")
    class Toy:
        pass

    assert reg["toy"] is Toy and Toy.name == "toy" and reg.names() == ["toy"]


def test_unknown_name_lists_registered_ones():
    with pytest.raises(KeyError, match="unknown method 'nope'; registered: .*fo-graddiff"):
        registry.methods["nope"]


def test_duplicate_name_is_an_error():
    reg = Registry("method", "harness.test-none", "builtins:object")
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
    reg = Registry("method", "harness.methods", "builtins:object")
    assert reg.names() == ["plugin-method"] and FakeEntryPoint.loaded == 0  # listing names imports nothing
    assert reg["plugin-method"] is Plugin and Plugin.name == "plugin-method"
    assert seen["group"] == "harness.methods" and FakeEntryPoint.loaded == 1


def test_builtins_are_registered_through_their_entry_points():
    assert {"fo-graddiff", "so-graddiff", "simu"} <= set(registry.methods.names())
    assert {"tofu-mini", "tofu", "lume-mini", "lume"} <= set(registry.benchmarks.names())
    assert registry.methods["simu"].name == "simu" and registry.benchmarks["lume"].name == "lume"


def test_a_component_must_subclass_the_registrys_base():
    class NotAMethod:
        pass

    with pytest.raises(TypeError, match="method 'x': NotAMethod is not a subclass of methods.base.UnlearningMethod"):
        registry.methods.register("x")(NotAMethod)
    assert "x" not in registry.methods


def test_temporary_registration_is_undone_after_the_block():
    from methods.fo_graddiff import FOGradDiff

    class Toy(FOGradDiff):
        pass

    with registry.methods.temporarily("toy-temporary", Toy):
        assert registry.methods["toy-temporary"] is Toy and "toy-temporary" in registry.methods.names()
    assert "toy-temporary" not in registry.methods
