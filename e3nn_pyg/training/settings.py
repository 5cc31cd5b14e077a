r"""One key of the training configuration: its type, default, help and limits.

A :class:`Setting` knows everything about a key that the command line, YAML files, the
help text and the checks need: its type (``"str"``, ``"path"``, ``"int"``, ``"float"``,
``"bool"`` or ``"split"``), whether it may be null, its default, its help and its
:class:`Limits` (bounds, choices). :meth:`Setting.checked` is the one check of a value; the
help of ``e3nn-pyg train --help`` ends with :meth:`Setting.offers`, the values it accepts,
written from the same limits.

A :class:`Section` is the group of settings of one model kind, read from its class's
constructor: its defaults, annotations and the ``Args:`` of its docstring. A
:class:`KindChoice` is a key of the configuration (``model:``, ``baseline:``) whose ``name``
chooses the model kind: its other keys are the chosen kind's section (and the choice's own
settings, e.g. the baseline's learning rate). Its help names the kinds each key belongs to,
and a key of another kind than the chosen one is refused, naming the kind it belongs to.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..checks import is_int, is_real

__all__ = ["ConfigError", "KindChoice", "Limits", "Section", "Setting", "check_keys"]


class ConfigError(ValueError):
    """A user mistake in the configuration, a file or a checkpoint: the message says what to
    fix (the command line prints it as one line, without a traceback)."""


@dataclass(frozen=True)
class Limits:
    """The values a number (or each number of a split) or a string may take.

    Args:
        min (float, optional): the smallest value allowed. (default: :obj:`None`)
        max (float, optional): the largest value allowed. (default: :obj:`None`)
        above (float, optional): values must be larger. (default: :obj:`None`)
        below (float, optional): values must be smaller. (default: :obj:`None`)
        choices (tuple of str, optional): the values allowed. (default: :obj:`None`)
    """

    min: float | None = None
    max: float | None = None
    above: float | None = None
    below: float | None = None
    choices: tuple[str, ...] | None = None

    def describe(self) -> str:
        """The limits as text: ``">= 1"``, ``"in (0, 1)"``, ``"one of {a, b}"``, or ``""``."""
        if self.choices is not None:
            return "one of {" + ", ".join(self.choices) + "}"
        low = (f"[{_number(self.min)}" if self.min is not None else None) or (
            f"({_number(self.above)}" if self.above is not None else None
        )
        high = (f"{_number(self.max)}]" if self.max is not None else None) or (
            f"{_number(self.below)})" if self.below is not None else None
        )
        if low and high:
            return f"in {low}, {high}"
        if low:
            return (">= " if low[0] == "[" else "> ") + low[1:]
        if high:
            return ("<= " if high[-1] == "]" else "< ") + high[:-1]
        return ""

    def allows(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        return not (
            (self.min is not None and not value >= self.min)
            or (self.max is not None and not value <= self.max)
            or (self.above is not None and not value > self.above)
            or (self.below is not None and not value < self.below)
        )


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _is_split(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 3 and all(map(is_real, value))


#: kind -> (description in messages, type check)
_TYPES: dict[str, tuple[str, Any]] = {
    "str": ("a string", lambda v: isinstance(v, str)),
    "path": ("a file path", lambda v: isinstance(v, str) and bool(v.strip())),
    "int": ("an integer", is_int),
    "float": ("a finite number", lambda v: is_real(v) and math.isfinite(v)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "split": ("three fractions (train, val, test), e.g. [0.8, 0.1, 0.1]", _is_split),
}


@dataclass(frozen=True)
class Setting:
    """One key of the configuration (see the module docstring); ``offered`` replaces the
    values it accepts (:meth:`offers`) where they are several kinds' different ones."""

    key: str
    kind: str
    optional: bool
    default: Any
    help: str
    limits: Limits = field(default_factory=Limits)
    offered: str | None = None

    def checked(self, name: str, value: Any) -> Any:
        """``value`` checked against the type and the limits, normalized (floats where
        floats are expected, lists for splits).

        Raises:
            ConfigError: naming the key ``name``, what it must be and the value.
        """
        if value is None and self.optional:
            return None
        description, check = _TYPES[self.kind]
        if not check(value):
            shown = "null" if value is None else repr(value)
            raise ConfigError(f"config key '{name}' must be {description}, got {shown}")
        if self.kind == "float":
            value = float(value)
        if self.kind == "split":
            value = [float(s) for s in value]
        for item in value if self.kind == "split" else [value]:
            if not self.limits.allows(item):
                raise ConfigError(self._refusal(name, value))
        return value

    def _refusal(self, name: str, value: Any) -> str:
        if self.limits.choices is not None:
            return f"unknown {name} {value!r}: choose one of {', '.join(self.limits.choices)}"
        what = "each fraction" if self.kind == "split" else name
        null = " (or null)" if self.optional else ""
        return f"{what} must be {self.limits.describe()}{null}, got {value}"

    def offers(self) -> str:
        """The values the setting accepts, as its help text ends: ``"one of {a, b}, or
        null; default: a"`` (without the default where the help says it)."""
        if self.offered is not None:
            return self.offered
        accepted = self.limits.describe() or _TYPES[self.kind][0]
        if self.kind == "split" and self.limits.describe():
            accepted = f"each fraction {accepted}"
        if self.optional:
            accepted += ", or null"
        if "(default:" in self.help:
            return accepted
        shown = "null" if self.default is None else self.default
        if isinstance(shown, bool):
            shown = str(shown).lower()
        return f"{accepted}; default: {shown}"


_KINDS = {"str": "str", "RsLike": "str", "int": "int", "float": "float", "bool": "bool",
          "list[float]": "split"}  # fmt: skip


def annotation_kind(annotation: Any) -> tuple[str, bool]:
    """``(kind, optional)`` of an annotation, written as a string or as a type."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    if not isinstance(annotation, (str, type)):
        text = str(annotation).replace("typing.", "")
    optional = "None" in text or text.startswith("Optional[")
    base = re.sub(r"^Optional\[(.*)\]$", r"\1", text).replace(" | None", "").strip()
    if base not in _KINDS:
        raise TypeError(f"no config type for annotation {text!r}")
    return _KINDS[base], optional


def _argument_help(cls: type) -> dict[str, str]:
    """The ``Args:`` entries of a class docstring (PyG's style), without their defaults."""
    entries: dict[str, str] = {}
    key = None
    in_args = False
    for line in inspect.getdoc(cls).splitlines():
        if line.strip() == "Args:":
            in_args = True
            continue
        if in_args and line and not line.startswith(" "):  # the next section
            break
        match = re.match(r"^    (\w+) \([^)]*\):\s*(.*)$", line)
        if in_args and match:
            key = match.group(1)
            entries[key] = match.group(2)
        elif in_args and key and line.startswith("        "):
            entries[key] += " " + line.strip()
    return {k: re.sub(r"\s*\(default:.*$", "", v).strip() for k, v in entries.items()}


class Section:
    """The settings of one model kind under a key of the configuration (``model:``,
    ``baseline:``), read from a class's constructor: its defaults and annotations, and the
    help of its docstring (:class:`KindChoice` adds whose argument each is).

    Args:
        name (str): the key of the configuration the kind is chosen under.
        cls (type): the class whose constructor arguments the section holds.
        keys (tuple of str): the arguments a run may set.
        defaults (dict, optional): the run's own defaults where they differ from the
            constructor's. (default: :obj:`None`)
        limits (dict, optional): :class:`Limits` by key, checked before the class is built
            (the constructor checks the rest). (default: :obj:`None`)
    """

    def __init__(
        self,
        name: str,
        cls: type,
        keys: tuple[str, ...],
        defaults: Mapping[str, Any] | None = None,
        limits: Mapping[str, Limits] | None = None,
    ) -> None:
        self.name = name
        self.cls = cls
        self.label = cls.__name__
        self.argument_keys = keys
        parameters = inspect.signature(cls).parameters
        docs = _argument_help(cls)
        self.settings: dict[str, Setting] = {}
        for key in keys:
            kind, optional = annotation_kind(parameters[key].annotation)
            default = (defaults or {}).get(key, parameters[key].default)
            self.settings[key] = Setting(key, kind, optional or default is None, default,
                                         docs[key], (limits or {}).get(key, Limits()))  # fmt: skip

    def arguments(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The constructor arguments among a section's values."""
        return {key: values[key] for key in self.argument_keys}


class KindChoice:
    """A key of the configuration whose ``name`` chooses a model kind (``model:``,
    ``baseline:``): its other keys are the chosen kind's :class:`Section` and the choice's own
    settings (``extra``). With no kind chosen (``baseline: null``) it keeps the settings of its
    first kind, so that a config file stays valid when the baseline is switched off and on.

    Args:
        key (str): the key of the configuration.
        sections (dict): the :class:`Section` of each kind, by the kind's name.
        name (Setting): the setting ``name`` that chooses the kind (choices: the kinds).
        extra (dict, optional): settings of the choice whatever the kind.
            (default: :obj:`None`)
    """

    def __init__(
        self,
        key: str,
        sections: Mapping[str, Section],
        name: Setting,
        extra: Mapping[str, Setting] | None = None,
    ) -> None:
        self.key = key
        self.sections = dict(sections)
        self.name = name
        self.extra = dict(extra or {})

    def section(self, name: str | None) -> Section | None:
        """The section of the kind ``name`` (:obj:`None`: the first kind's; an unknown
        name: :obj:`None`)."""
        return next(iter(self.sections.values())) if name is None else self.sections.get(name)

    def settings(self, name: str | None) -> dict[str, Setting]:
        """The settings of the choice when it names the kind ``name``."""
        return {"name": self.name, **self.section(name).settings, **self.extra}

    def defaults(self) -> dict[str, Any]:
        """The values of the default kind."""
        settings = self.settings(self.name.default)
        return {key: copy.deepcopy(setting.default) for key, setting in settings.items()}

    def changes_kind(self, values: Mapping[str, Any], name: Any) -> bool:
        """Whether naming ``name`` in the choice's ``values`` takes another kind's settings
        (so that the new kind's defaults apply)."""
        return self.section(values.get("name", self.name.default)) is not self.section(name)

    def checked(self, values: Any, source: str) -> dict[str, Any]:
        """The values of the kind the choice names, over that kind's defaults, converted and
        checked; a key of another kind is refused, naming the kind."""
        if not isinstance(values, Mapping):
            raise ConfigError(
                f"'{self.key}' in {source} must be a mapping of keys to values, got "
                f"{type(values).__name__}"
            )
        name = self.name.checked(f"{self.key}.name", values.get("name", self.name.default))
        settings = self.settings(name)
        for key in values:
            owners = [kind for kind, section in self.sections.items() if key in section.settings]
            if key not in settings and owners:
                raise ConfigError(
                    f"config key '{self.key}.{key}' in {source} is a setting of {self.key} "
                    f"{' and '.join(owners)}, and {self.key} is {name or 'null'}: choose "
                    f"{owners[0]} (--{self.key} {owners[0]}, or {self.key}: {{name: "
                    f"{owners[0]}}} in a config file) or leave {key} out"
                )
        check_keys(values, list(settings), source, prefix=f"{self.key}.")
        out = {key: copy.deepcopy(setting.default) for key, setting in settings.items()}
        for key, value in values.items():
            out[key] = settings[key].checked(f"{self.key}.{key}", value)
        out["name"] = name
        return out

    def flag_settings(self) -> dict[str, Setting]:
        """One setting per key of every kind, for the command line and the help: its help
        says whose argument it is and, where the kinds differ, each kind's values."""
        keys = dict.fromkeys(key for section in self.sections.values() for key in section.settings)
        return {"name": self.name, **{key: self._merged(key) for key in keys}, **self.extra}

    def _merged(self, key: str) -> Setting:
        owners = {kind: section for kind, section in self.sections.items()
                  if key in section.settings}  # fmt: skip
        settings = [section.settings[key] for section in owners.values()]
        first = settings[0]
        if any(setting.kind != first.kind for setting in settings):
            raise TypeError(f"{self.key}.{key} has different types in {', '.join(owners)}")
        whose = " and ".join(f"{section.label}'s" for section in owners.values()) + f" {key}"
        if len(self.sections) > 1:
            whose = f"{self.key} {', '.join(owners)}: {whose}"
        offers = {kind: section.settings[key].offers() for kind, section in owners.items()}
        offered = None
        if len(set(offers.values())) > 1:
            offered = " | ".join(f"{kind}: {text}" for kind, text in offers.items())
        helps = {section.label: section.settings[key].help for section in owners.values()}
        text = first.help
        if len(set(helps.values())) > 1:
            text = " | ".join(f"{label}: {help_text}" for label, help_text in helps.items())
        optional = any(setting.optional for setting in settings)
        return Setting(key, first.kind, optional, first.default, f"{text} ({whose})",
                       first.limits, offered)  # fmt: skip


def check_keys(
    values: Mapping,
    keys: list[str],
    source: str,
    prefix: str = "",
    elsewhere: Mapping[str, str] | None = None,
) -> None:
    """Raise :class:`ConfigError` for the first key of ``values`` not among ``keys``, with
    the closest valid key (or its place ``elsewhere``, e.g. a key of a section) as a hint."""
    for key in values:
        if key in keys:
            continue
        close = difflib.get_close_matches(str(key), keys, n=1) or sorted(
            (k for k in keys if str(key).startswith(k) or k.startswith(str(key))),
            key=len,
            reverse=True,
        )
        hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
        if key in (elsewhere or {}):
            hint = f" (did you mean '{elsewhere[key]}'?)"
        raise ConfigError(
            f"unknown config key '{prefix}{key}' in {source}{hint}; valid keys: "
            + ", ".join(prefix + k for k in keys)
        )
