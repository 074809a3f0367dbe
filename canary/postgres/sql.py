"""SQL text building for PostgreSQL (seeding and detection objects): the ONE place where identifiers
and literals are quoted.

Every identifier that reaches SQL text (schema, table, column, policy and function names) goes
through :func:`ident`; every literal that cannot be a bind parameter (DDL bodies, policy arrays) goes
through :func:`literal`. Both refuse what PostgreSQL itself could not represent, so a hostile name is
an error, never a different statement. Names taken from configuration are additionally checked with
:func:`parse_target` before any catalog lookup.
"""

from __future__ import annotations

import re

from canary.errors import UnsafeIdentifierError

MAX_IDENT_BYTES = 63
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


def ident(name: str) -> str:
    """``name`` as a double-quoted SQL identifier (embedded quotes doubled).

    Raises :class:`UnsafeIdentifierError` for an empty name, a NUL byte or more than 63 bytes
    (PostgreSQL would silently truncate it and address a different object).
    """
    if not isinstance(name, str) or not name:
        raise UnsafeIdentifierError("empty SQL identifier")
    if "\x00" in name:
        raise UnsafeIdentifierError("SQL identifier contains a NUL byte")
    if len(name.encode()) > MAX_IDENT_BYTES:
        raise UnsafeIdentifierError(f"SQL identifier longer than {MAX_IDENT_BYTES} bytes: {name[:20]!r}...")
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    return f"{ident(schema)}.{ident(name)}"


def literal(value: str) -> str:
    """``value`` as a standard-conforming SQL string literal (quotes doubled; no backslash escapes).

    Only valid with ``standard_conforming_strings = on`` (the default since PostgreSQL 9.1; the
    seeder checks it on connect). NUL bytes cannot be stored in text and are refused.
    """
    if "\x00" in value:
        raise UnsafeIdentifierError("SQL literal contains a NUL byte")
    return "'" + value.replace("'", "''") + "'"


def parse_target(target: str) -> tuple[str, str]:
    """Split a configured ``schema.table`` (or ``table`` in schema public) into plain names.

    Only plain identifiers (letters, digits, ``_``, ``$``; not starting with a digit) are accepted, so
    ``customers"; DROP TABLE x; --`` is refused before any query is sent.
    """
    parts = target.split(".") if isinstance(target, str) else []
    if len(parts) == 1:
        parts = ["public", parts[0]]
    if len(parts) != 2 or not all(_PLAIN.match(p) and len(p.encode()) <= MAX_IDENT_BYTES for p in parts):
        shown = target if isinstance(target, str) else type(target).__name__
        raise UnsafeIdentifierError(
            f"table {shown[:80]!r} is not a plain 'schema.table' name (letters, digits, _ and $ only)",
            target=shown[:80],
        )
    return parts[0], parts[1]


def array_literal(values: list[str]) -> str:
    """A PostgreSQL array input string (``{"1","2"}``) with every element double-quoted and escaped.

    Wrap the result in :func:`literal` and cast it (``'{...}'::bigint[]``) to use it in SQL text.
    """
    out = []
    for v in values:
        if "\x00" in v:
            raise UnsafeIdentifierError("array element contains a NUL byte")
        out.append('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(out) + "}"
