"""Secrets in configuration: a :class:`Secret` is given inline, as ``{ env = "NAME" }`` or as
``{ file = "/path" }``; its ``str()`` and ``repr()`` are masked. A leaf module: the config schema and
every plug-in's options import it."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


class Secret:
    """A secret string. ``str()`` and ``repr()`` are masked; call :meth:`reveal` where it is used."""

    __slots__ = ("_value", "_origin")

    def __init__(self, value: str, origin: str = "inline") -> None:
        self._value = value
        self._origin = origin

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('**********', origin={self._origin!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(
            resolve_secret, serialization=core_schema.plain_serializer_function_ser_schema(lambda s: repr(s))
        )


def resolve_secret(value: object) -> Secret:
    """Accept ``"literal"``, ``{env = "NAME"}`` or ``{file = "path"}``."""
    if isinstance(value, Secret):
        return value
    if isinstance(value, str):
        return Secret(value)
    if isinstance(value, Mapping) and set(value) == {"env"}:
        name = str(value["env"])
        if name not in os.environ:
            raise ValueError(f"environment variable {name} is not set")
        return Secret(os.environ[name], origin=f"env:{name}")
    if isinstance(value, Mapping) and set(value) == {"file"}:
        path = Path(str(value["file"])).expanduser()
        try:
            return Secret(path.read_text().strip(), origin=f"file:{path}")
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from exc
    raise ValueError('expected a string, { env = "NAME" } or { file = "/path" }')


def required_secret(what: str) -> Callable[[object], Secret]:
    """A ``mode="before"`` field validator: a secret that must not be empty (``what`` names it)."""

    def check(value: object) -> Secret:
        secret = resolve_secret(value)
        if not secret.reveal().strip():
            raise ValueError(f"{what} is empty")
        return secret

    return check
