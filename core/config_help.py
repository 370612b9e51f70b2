"""Config field documentation, read from the dataclass source, and the command-line options
built from it.

A config field is documented once, by the string literal under it (sparsify's style):

    k: int = 32
    \"\"\"Active latents per token.\"\"\"

`field_docs` reads those strings with `ast`. `add_field_option` turns a field into an argparse
option whose help is that string and whose default is the field's. `apply_overrides` sets
'section.field' values through `dataclasses.replace`, so every `__post_init__` checks the result.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import json
import textwrap
import types
import typing
from typing import Any

_SCALARS = (int, float, str, bool)
_METAVARS: dict[type, str] = {int: "N", float: "X"}
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """{field: the string literal under it, whitespace collapsed} of a dataclass."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    node = tree.body[0]
    assert isinstance(node, ast.ClassDef)
    docs = {}
    for stmt, after in zip(node.body, node.body[1:], strict=False):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[stmt.target.id] = " ".join(after.value.value.split())
    return docs


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """{field: its resolved annotation} (the config modules use string annotations)."""
    return typing.get_type_hints(cls)


def field_default(cls: type, name: str) -> Any:
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            return None if f.default is dataclasses.MISSING else f.default
    raise ValueError(f"{cls.__name__} has no field {name!r}")


def _scalar(annotation: Any) -> tuple[type | None, bool]:
    """(int | float | str | bool, or None for containers; whether None is allowed)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    optional = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    base = args[0] if optional and len(args) == 1 else annotation
    return (base if base in _SCALARS else None), optional


def parse_value(cls: type, name: str, text: str) -> Any:
    """A command-line string -> the type of cls.name: scalars as such, 'none' for an optional
    field, JSON for lists, tuples and dicts."""
    if name not in field_types(cls):
        raise ValueError(f"{cls.__name__} has no field {name!r}; fields: {_names(cls)}")
    annotation = field_types(cls)[name]
    base, optional = _scalar(annotation)
    if optional and text.lower() in ("none", "null"):
        return None
    try:
        if base is bool:
            if text.lower() not in _TRUE + _FALSE:
                raise ValueError(f"expected true or false, got {text!r}")
            return text.lower() in _TRUE
        if base is not None:
            return base(text)
        value = json.loads(text)
    except ValueError as err:
        raise ValueError(f"{cls.__name__}.{name}: cannot read {text!r} ({err})") from err
    return tuple(value) if typing.get_origin(annotation) is tuple else value


def _names(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def field_help(cls: type, name: str, shown_default: Any = dataclasses.MISSING) -> str:
    """The field's docstring plus its default (the dataclass default unless given), escaped for
    argparse."""
    default = field_default(cls, name) if shown_default is dataclasses.MISSING else shown_default
    text = field_docs(cls).get(name, "")
    if default is not None and not isinstance(default, bool):
        text += f" (default: {default!r})" if isinstance(default, str) else f" (default: {default})"
    return text.replace("%", "%%")


def add_field_option(
    parser: argparse._ActionsContainer,
    cls: type,
    name: str,
    flag: str | None = None,
    dest: str | None = None,
    unset: bool = False,
    choices: tuple[str, ...] | None = None,
) -> argparse.Action:
    """An option that sets cls.name, typed by its annotation, documented by its docstring.

    The option's default is the field's default, or None with `unset` (the caller then keeps
    whatever its config holds). A bool field that defaults to True becomes --no-<name>.
    """
    base, _ = _scalar(field_types(cls)[name])
    if base is None:
        raise TypeError(f"{cls.__name__}.{name}: only scalar fields become options")
    default = None if unset else field_default(cls, name)
    dashed, text = name.replace("_", "-"), field_help(cls, name)
    if base is bool:
        on = bool(field_default(cls, name))
        text += " (on unless this option is given)" if on else " (off by default)"
        return parser.add_argument(
            flag or (f"--no-{dashed}" if on else f"--{dashed}"),
            dest=dest or name,
            action="store_false" if on else "store_true",
            default=default,
            help=text,
        )
    return parser.add_argument(
        flag or f"--{dashed}",
        dest=dest or name,
        type=base,
        choices=choices,
        default=default,
        metavar=None if choices else _METAVARS.get(base, name.upper()),
        help=text,
    )


def section_class(root: type, key: str) -> tuple[type, str]:
    """'train.k' -> (the class of root.train, 'k'); 'keep_dense' -> (root, 'keep_dense')."""
    section, _, name = key.rpartition(".")
    if not section:
        return root, name
    cls = field_types(root).get(section)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        sections = [k for k, t in field_types(root).items() if dataclasses.is_dataclass(t)]
        raise ValueError(f"unknown config section {section!r}; sections: {', '.join(sections)}")
    return cls, name


def parse_assignment(root: type, text: str) -> tuple[str, Any]:
    """'train.epochs=2' -> ('train.epochs', 2.0), typed by the field's annotation."""
    key, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"expected SECTION.FIELD=VALUE, got {text!r}")
    cls, name = section_class(root, key.strip())
    return key.strip(), parse_value(cls, name, value.strip())


def apply_overrides(cfg: Any, overrides: dict[str, Any]) -> Any:
    """A copy of cfg with {'section.field' | 'field': value} set; each changed section and the
    root are rebuilt with dataclasses.replace, so their __post_init__ rules run on the result."""
    per_section: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for key, value in overrides.items():
        cls, name = section_class(type(cfg), key)
        if name not in field_types(cls):
            raise ValueError(f"{cls.__name__} has no field {name!r}; fields: {_names(cls)}")
        section = key.rpartition(".")[0]
        (per_section.setdefault(section, {}) if section else top)[name] = value
    for section, values in per_section.items():
        top[section] = dataclasses.replace(getattr(cfg, section), **values)
    return dataclasses.replace(cfg, **top)


def describe(cfg: Any, prefix: str = "") -> list[str]:
    """'section.field = value' lines of a config tree, each followed by its docstring."""
    lines: list[str] = []
    cls: type = type(cfg)
    docs = field_docs(cls)
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if _is_instance(value):
            lines += ["", f"[{prefix}{f.name}]", *describe(value, f"{prefix}{f.name}.")]
            continue
        lines.append(f"{prefix}{f.name} = {_show(value)}")
        if f.name in docs:
            lines.append(textwrap.indent(textwrap.fill(docs[f.name], 92), " " * 4))
    return lines


def _show(value: Any) -> str:
    if isinstance(value, list):
        value = [dataclasses.asdict(v) if _is_instance(v) else v for v in value]
    plain_number = isinstance(value, int | float) and not isinstance(value, bool)
    return str(value) if plain_number else json.dumps(value)


def _is_instance(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)
