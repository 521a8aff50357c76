"""Config error messages that name the key, the value, where it came from and the expected form
(SPEC §9); secrets are shown as ``<redacted>``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

SECRET_KEYS = ("api_secret", "api_key_id", "token", "webhook_url")


_EXPECTED: dict[str, str] = {
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "list_type": "a list",
    "literal_error": "one of the listed values",
    "missing": "a value (this key is required)",
    "extra_forbidden": "no such key (check the spelling against README's config reference)",
    "model_type": "a table",
}


def _describe(error: Mapping[str, Any]) -> str:
    kind = str(error["type"])
    context = error.get("ctx") or {}
    if kind == "value_error":
        return str(context.get("error", error["msg"]))
    if kind == "greater_than_equal":
        return f"a number >= {context.get('ge')}"
    if kind == "greater_than":
        return f"a number > {context.get('gt')}"
    if kind == "less_than_equal":
        return f"a number <= {context.get('le')}"
    if kind == "literal_error":
        return f"one of {context.get('expected')}"
    if kind in ("too_short", "string_too_short"):
        return "a non-empty value"
    return _EXPECTED.get(kind, str(error["msg"]))


def _lookup(data: Mapping[str, Any], path: tuple[str | int, ...]) -> Any:
    node: Any = data
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _origin(path: tuple[str | int, ...], env_keys: Mapping[tuple[str, ...], str]) -> str:
    keys = tuple(str(p) for p in path if isinstance(p, str))
    for length in range(len(keys), 0, -1):
        if keys[:length] in env_keys:
            return "from environment " + env_keys[keys[:length]]
    return "in the config file"


def format_errors(
    exc: ValidationError, data: Mapping[str, Any], env_keys: Mapping[tuple[str, ...], str]
) -> str:
    lines = []
    for error in exc.errors():
        path = tuple(error["loc"])
        if not path:  # a rule across keys: its message names them
            lines.append(_describe(error))
            continue
        key = ".".join(str(part) for part in path)
        secret = any(str(part) in SECRET_KEYS for part in path)
        value = "<redacted>" if secret else repr(_lookup(data, path))
        shown = "" if error["type"] == "missing" else f" = {value}"
        lines.append(f"{key}{shown} ({_origin(path, env_keys)}): expected {_describe(error)}")
    return "invalid configuration:\n  " + "\n  ".join(lines)
