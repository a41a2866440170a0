"""Registry lookups and builds fail with closest names and config paths."""

import pytest

from engine.errors import ConfigError, RegistryError
from engine.utils.registry import Registry


class Widget:
    def __init__(self, size, colour="red"):
        self.size, self.colour = size, colour


def make_registry():
    registry = Registry("WIDGET")
    registry.register(Widget)
    return registry


def test_unknown_name_lists_closest_names():
    with pytest.raises(RegistryError, match=r"No object named 'Widgte' in registry WIDGET\. Did you mean 'Widget'"):
        make_registry().get("Widgte")
    with pytest.raises(KeyError):  # still a KeyError for callers that catch that
        make_registry().get("x")


def test_build_names_the_config_path_on_bad_parameters():
    registry = make_registry()
    assert registry.build({"name": "Widget", "size": 3}, where="a.b").size == 3
    with pytest.raises(ConfigError, match=r"a\.b: unexpected parameter 'colur'\. Did you mean 'colour'"):
        registry.build({"name": "Widget", "size": 3, "colur": "blue"}, where="a.b")
    with pytest.raises(ConfigError, match=r"a\.b: missing required parameter\(s\) 'size'"):
        registry.build({"name": "Widget"}, where="a.b")
    with pytest.raises(RegistryError, match=r"a\.b\.name: No object named 'Gadget'"):
        registry.build({"name": "Gadget"}, where="a.b")


def test_errors_inside_a_constructor_are_not_disguised():
    registry = Registry("BROKEN")

    @registry.register()
    class Broken:
        def __init__(self):
            raise TypeError("a real bug")

    with pytest.raises(TypeError, match="a real bug"):
        registry.build({"name": "Broken"}, where="x")
