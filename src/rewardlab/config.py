"""Helpers shared by the frozen config dataclasses: validation, YAML/JSON files, field docs.

Leaf module: imports nothing from rewardlab but ``errors``.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

__all__ = ["config_from_file", "field_docs", "to_dict", "validate_fields"]

T = TypeVar("T")


def _check(name: str, value: Any, hint: Any) -> None:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"option '{name}' must be one of {list(args)}, got {value!r}")
    elif origin in (typing.Union, types.UnionType):
        errors = []
        for arg in args:
            try:
                return _check(name, value, arg)
            except ConfigError as err:
                errors.append(str(err))
        shown = " | ".join("None" if a is type(None) else getattr(a, "__name__", str(a)) for a in args)
        raise ConfigError(f"option '{name}' got {value!r}, which matches none of {shown}")
    elif origin is dict:
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in value.items()
        ):
            raise ConfigError(f"option '{name}' must be a mapping of names to numbers, got {value!r}")
    elif hint is type(None):
        if value is not None:
            raise ConfigError(f"option '{name}' must be None")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"option '{name}' must be a number, got {value!r}")
    elif hint in (int, str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ConfigError(f"option '{name}' must be {hint.__name__}, got {value!r}")
    elif dataclasses.is_dataclass(hint) and isinstance(hint, type) and not isinstance(value, hint):
        raise ConfigError(f"option '{name}' must be a {hint.__name__}, got {value!r}")


def validate_fields(instance: Any) -> None:
    """Check every field's value against its annotation (``Literal`` names included)."""
    hints = typing.get_type_hints(type(instance))
    for f in dataclasses.fields(instance):
        _check(f.name, getattr(instance, f.name), hints[f.name])


def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string literal under each field) of a dataclass and the dataclasses it extends (a
    subclass's docstring of a field wins)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is not object and dataclasses.is_dataclass(klass):
            docs.update(_own_field_docs(klass))
    return docs


def _own_field_docs(cls: type) -> dict[str, str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    node = tree.body[0]
    if not isinstance(node, ast.ClassDef):
        raise TypeError(f"{cls!r} is not a class")
    body = node.body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                docs[node.target.id] = " ".join(str(nxt.value.value).split())
    return docs


def to_dict(instance: Any) -> dict[str, Any]:
    return dataclasses.asdict(instance)


def config_from_file(cls: type[T], path: str | Path, build: Any = None, **overrides: Any) -> T:
    """Build ``cls`` from a YAML or JSON file; ``overrides`` (not ``None``) win over the file. ``build`` (default
    ``cls``) takes the merged options and checks their names itself (e.g. ``TrainConfig.from_options``)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config: {err}") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: malformed YAML: {err}") from None
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}:{err.lineno}: malformed JSON: {err.msg}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of option names to values")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    if build is not None:
        try:
            return build(**raw)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # cls: any config dataclass
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown option(s) {unknown}; known options: {sorted(known)}")
    return cls(**raw)
