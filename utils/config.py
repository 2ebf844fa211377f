"""Options declared once: a frozen dataclass with a comment per field, and everything else from it.

Each stage declares its options as one dataclass (`FeatureConfig`, `TrainConfig`,
`TranscribeOptions`, `AppOptions`). This module turns outside values into its typed fields,
whatever their way in: a notebook's parameters cell, a YAML file (where `1e-5` is a string), a
command line (`--learning-rate 1e-5`, `--set lora=true`). A value of the wrong type is refused with
a ConfigError naming the field (`TrainConfig.lora='maybe': expected true or false`); an unknown
name is refused listing the known ones. The command line is generated from the dataclass, with the
field's comment as its help, so no option is declared twice.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import re
import tokenize
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigError

TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")
NONE_WORDS = ("none", "null", "~", "")


def defaults(cls) -> dict[str, Any]:
    """{field: default} of a dataclass (default factories called)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def field_docs(cls) -> dict[str, str]:
    """{field: its comment} read from the class source: the comment on the field's line, else the
    comment lines right above it."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    names = {f.name for f in dataclasses.fields(cls)}
    docs: dict[str, str] = {}
    above: list[str] = []
    lines = source.splitlines()
    comments = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        match = re.match(r"^(\w+)\s*:", stripped)
        if stripped.startswith("#"):
            above.append(comments.get(number, ""))
        elif match and match.group(1) in names and match.group(1) not in docs:
            inline = comments.get(number) if not stripped.startswith("#") else None
            docs[match.group(1)] = inline or " ".join(above)
            above = []
        else:
            above = []
    return docs


def _hint_name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _members(hint) -> tuple[list, bool]:
    """(non-None members of a Union hint, whether None is allowed)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        return [a for a in args if a is not type(None)], type(None) in args
    return [hint], hint is Any


def convert(label: str, hint, value: Any) -> Any:
    """`value` as the type `hint`, or ConfigError naming it by `label` ("TrainConfig.lora").

    Strings (a command line, YAML's "1e-5") are parsed: numbers, true/false/yes/no, none/null,
    comma-separated lists, YAML/JSON mappings.
    """
    members, optional = _members(hint)
    if value is None or (
        optional and isinstance(value, str) and value.strip().lower() in NONE_WORDS
    ):
        if optional:
            return None
        raise ConfigError(f"{label}=None: a value is required ({_hint_name(hint)})")
    errors = []
    for member in members:
        try:
            return _convert_one(member, value)
        except (TypeError, ValueError) as err:
            errors.append(str(err))
    raise ConfigError(f"{label}={value!r} must be {' or '.join(errors)}")


def _convert_one(hint, value):
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        if value in choices:
            return value
        raise ValueError(f"one of {list(choices)}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
            return value.strip().lower() in TRUE_WORDS
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError("true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
            return int(value)
        raise ValueError("an integer")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError("a number")
    if hint is str:
        if isinstance(value, (str, Path)):
            return str(value)
        raise ValueError("a string")
    if origin in (tuple, list, Sequence) or hint in (tuple, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis] or [Any]
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, (list, tuple)):
            return tuple(_convert_one(args[0], v) for v in value)
        raise ValueError("a list (or comma-separated values)")
    if origin in (dict, Mapping) or hint is dict:
        if isinstance(value, str) and value.strip().startswith("{"):
            import yaml

            value = yaml.safe_load(value)
        if isinstance(value, Mapping):
            return dict(value)
        raise ValueError("a mapping such as {'key': value}")
    if isinstance(hint, type) and isinstance(value, hint):
        return value
    raise ValueError(_hint_name(hint))


def coerce(config, label: str | None = None) -> None:
    """Convert every field of a (frozen) dataclass instance to its declared type, in place: the
    first line of each config's __post_init__, so that a config built directly from notebook or
    YAML values is as typed as one built by `from_dict`. Errors name `label.field`."""
    label = label or type(config).__name__
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = convert(f"{label}.{f.name}", hints[f.name], getattr(config, f.name))
        object.__setattr__(config, f.name, value)


def from_dict(cls, values: Mapping[str, Any]):
    """An instance of dataclass `cls` from {field: value}, each value converted to its field's
    type; unknown names are refused listing the known ones. The dataclass's own __post_init__
    then checks ranges and combinations."""
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(known)}")
    converted = {k: convert(f"{cls.__name__}.{k}", hints[k], v) for k, v in values.items()}
    try:
        return cls(**converted)
    except TypeError as err:  # a required field left out
        raise ConfigError(f"{cls.__name__}: {err}") from None


def pick(cls, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `namespace` (a notebook's globals()) that are fields of `cls`."""
    return {f.name: namespace[f.name] for f in dataclasses.fields(cls) if f.name in namespace}


def replace(config, **changes):
    """A copy of a config dataclass with some fields changed, converted and checked as new."""
    return from_dict(type(config), {**_fields(config), **changes})


def _fields(config) -> dict[str, Any]:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file of field values (a mapping), or ConfigError naming the file."""
    import yaml

    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read it as YAML ({err})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of option names to values")
    return loaded


def parse_set(pairs: Sequence[str]) -> dict[str, str]:
    """["max_steps=10", "lora=true"] -> {"max_steps": "10", "lora": "true"} (converted later)."""
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected name=value")
        values[key.strip().replace("-", "_")] = value.strip()
    return values


def _repeatable(hint) -> bool:
    """Fields that take several values: lists, and free-form ones (a source spec or a list)."""
    members = _members(hint)[0]
    return any(m is Any or typing.get_origin(m) in (tuple, list, Sequence) for m in members)


def add_arguments(parser: argparse.ArgumentParser, *classes, skip: Sequence[str] = ()) -> None:
    """`--name VALUE` (also `--name-with-dashes`) for every field of the dataclasses, help from
    the field's comment; plus `--config FILE.yaml` and `--set name=value`. Values stay strings
    here and are converted by `values_from_args`; a bool field given without a value is true, and
    a list field may be repeated (`--source a --source b`) or given comma-separated."""
    for cls in classes:
        hints = typing.get_type_hints(cls)
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            if f.name in skip:
                continue
            flags = sorted({f"--{f.name}", f"--{f.name.replace('_', '-')}"}, key=len, reverse=True)
            is_bool = bool in _members(hints[f.name])[0]
            repeat = _repeatable(hints[f.name])
            default = defaults(cls).get(f.name, "required")
            help_text = docs.get(f.name, "") + ("; repeat for several" if repeat else "")
            parser.add_argument(
                *flags,
                dest=f.name,
                default=argparse.SUPPRESS,
                action="append" if repeat else "store",
                nargs="?" if is_bool else None,
                const="true" if is_bool else None,
                metavar=f.name.upper(),
                help=f"{help_text} (default: {default!r})",
            )
    parser.add_argument("--config", help="YAML file of option values (the flags override it)")
    parser.add_argument(
        "--set",
        dest="set_values",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set any option, e.g. --set learning_rate=1e-5 (repeatable)",
    )


def values_from_args(args: argparse.Namespace, *classes) -> list[dict[str, Any]]:
    """Per dataclass, {field: value} from --config, --set and the --name flags (in that order of
    precedence, last wins). Names no class knows are refused."""
    merged: dict[str, Any] = load_yaml(args.config) if getattr(args, "config", None) else {}
    merged.update(parse_set(getattr(args, "set_values", [])))
    names = [f.name for cls in classes for f in dataclasses.fields(cls)]
    for key, value in vars(args).items():
        if key in names:  # a repeated flag gives a list; once, its one value (maybe "a,b")
            merged[key] = value[0] if isinstance(value, list) and len(value) == 1 else value
    unknown = sorted(set(merged) - set(names))
    if unknown:
        owners = "/".join(cls.__name__ for cls in classes)
        raise ConfigError(f"unknown {owners} option(s) {unknown}; known: {sorted(names)}")
    return [
        {k: v for k, v in merged.items() if k in {f.name for f in dataclasses.fields(cls)}}
        for cls in classes
    ]
