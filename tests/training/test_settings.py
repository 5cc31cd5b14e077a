"""Settings read from constructors, and a section whose name chooses the model kind
(KindChoice), with two test-only kinds."""

import pytest

from e3nn_pyg.training import ConfigError
from e3nn_pyg.training.settings import KindChoice, Limits, Section, Setting


class Small:
    """A test-only model kind.

    Args:
        cutoff (float, optional): the cutoff radius. (default: :obj:`4.0`)
        depth (int, optional): how many layers. (default: :obj:`2`)
    """

    def __init__(self, cutoff: float = 4.0, depth: int = 2) -> None:
        self.cutoff, self.depth = cutoff, depth


class Wide:
    """Another test-only model kind.

    Args:
        cutoff (float, optional): the cutoff radius. (default: :obj:`4.0`)
        width (int, optional): how many channels. (default: :obj:`8`)
        label (str, optional): a name. (default: :obj:`None`)
        depth (int, optional): the layers of another kind. (default: :obj:`1`)
    """

    def __init__(
        self, cutoff: float = 4.0, width: int = 8, label: str | None = None, depth: int = 1
    ) -> None:
        self.cutoff, self.width, self.label, self.depth = cutoff, width, label, depth


def choice(wide_keys: tuple[str, ...] = ("cutoff", "width", "label")) -> KindChoice:
    small = Section("model", Small, ("cutoff", "depth"), limits={"depth": Limits(min=1)})
    wide = Section("model", Wide, wide_keys, defaults={"cutoff": 6.0},
                   limits={"width": Limits(min=2)})  # fmt: skip
    name = Setting("name", "str", False, "small", "the kind", Limits(choices=("small", "wide")))
    return KindChoice("model", {"small": small, "wide": wide}, name)


def test_a_section_reads_defaults_types_and_help_from_the_constructor():
    section = Section("model", Wide, ("cutoff", "width", "label"))
    assert section.settings["width"] == Setting("width", "int", False, 8, "how many channels.")
    assert section.settings["label"].optional and section.label == "Wide"
    assert section.arguments({"cutoff": 1.0, "width": 2, "label": None, "name": "wide"}) == {
        "cutoff": 1.0, "width": 2, "label": None}  # fmt: skip


def test_the_chosen_kind_gives_the_settings_and_their_defaults():
    model = choice()
    assert model.defaults() == {"name": "small", "cutoff": 4.0, "depth": 2}
    assert model.checked({}, "config") == model.defaults()
    wide = model.checked({"name": "wide", "width": 4}, "config")
    assert wide == {"name": "wide", "cutoff": 6.0, "width": 4, "label": None}
    assert isinstance(model.checked({"name": "wide", "cutoff": 5}, "config")["cutoff"], float)


@pytest.mark.parametrize(
    "values, message",
    [
        (
            {"width": 4},
            r"'model.width' in run.yaml is a setting of model wide, and model is "
            r"small: choose wide \(--model wide, or model: \{name: wide\}",
        ),
        (
            {"name": "wide", "depth": 3},
            r"'model.depth' .* setting of model small, and model "
            r"is wide",
        ),
        ({"name": "deep"}, r"unknown model.name 'deep': choose one of small, wide"),
        ({"name": None}, r"'model.name' must be a string, got null"),
        ({"dept": 3}, r"unknown config key 'model.dept' in run.yaml \(did you mean 'model.depth'"),
        ({"name": "wide", "width": 1}, r"model.width must be >= 2, got 1"),
        ({"depth": 0}, r"model.depth must be >= 1, got 0"),
        ("wide", r"'model' in run.yaml must be a mapping of keys to values, got str"),
    ],
)
def test_mistakes_name_the_kind_or_the_limit(values, message):
    with pytest.raises(ConfigError, match=message):
        choice().checked(values, "run.yaml")


def test_changing_the_name_changes_the_kind_only_where_the_settings_differ():
    model = choice()
    assert model.changes_kind({"name": "small", "depth": 3}, "wide")
    assert not model.changes_kind({"name": "wide"}, "wide")
    assert not model.changes_kind({}, "small")  # the default kind
    assert model.changes_kind({}, "deep")  # an unknown kind: checked() refuses it


def test_a_choice_without_a_kind_keeps_its_first_kinds_settings():
    name = Setting("name", "str", True, None, "the baseline", Limits(choices=("wide",)))
    lr = Setting("lr", "float", True, None, "its rate", Limits(above=0))
    wide = Section("baseline", Wide, ("cutoff", "width"))
    baseline = KindChoice("baseline", {"wide": wide}, name, extra={"lr": lr})
    assert baseline.defaults() == {"name": None, "cutoff": 4.0, "width": 8, "lr": None}
    assert baseline.checked({"width": 3}, "config")["width"] == 3
    assert not baseline.changes_kind({"name": None}, "wide")  # switched on: settings kept
    flags = baseline.flag_settings()
    assert list(flags) == ["name", "cutoff", "width", "lr"]
    assert flags["width"].help == "how many channels. (Wide's width)"


def test_the_help_says_which_kinds_take_each_key_and_their_values():
    flags = choice().flag_settings()
    assert list(flags) == ["name", "cutoff", "depth", "width", "label"]
    assert flags["depth"].help == "how many layers. (model small: Small's depth)"
    assert flags["depth"].offers() == ">= 1; default: 2"
    both = choice(wide_keys=("cutoff", "depth")).flag_settings()["depth"]
    assert both.help == ("Small: how many layers. | Wide: the layers of another kind. "
                         "(model small, wide: Small's and Wide's depth)")  # fmt: skip
    assert both.offers() == "small: >= 1; default: 2 | wide: an integer; default: 1"
    cutoff = flags["cutoff"]
    assert cutoff.help == "the cutoff radius. (model small, wide: Small's and Wide's cutoff)"
    offers = "small: a finite number; default: 4.0 | wide: a finite number; default: 6.0"
    assert cutoff.offers() == offers
    assert flags["label"].optional and not flags["width"].optional


def test_kinds_that_type_a_shared_key_differently_are_refused():
    class Whole:
        """A test-only kind with an integer cutoff.

        Args:
            cutoff (int, optional): in whole Å. (default: :obj:`4`)
        """

        def __init__(self, cutoff: int = 4) -> None:
            self.cutoff = cutoff

    sections = {"small": choice().sections["small"], "whole": Section("model", Whole, ("cutoff",))}
    name = Setting("name", "str", False, "small", "the kind", Limits(choices=tuple(sections)))
    with pytest.raises(TypeError, match=r"model\.cutoff has different types in small, whole"):
        KindChoice("model", sections, name).flag_settings()
