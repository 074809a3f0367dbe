"""Error hierarchy. Every error canary raises on purpose derives from :class:`CanaryError`.

Errors carry structured fields so that the CLI can print one clear line and the listener can count
them by ``code`` in /metrics. Messages never include secret values.
"""

from __future__ import annotations

from typing import Any


class CanaryError(Exception):
    """Root of canary's own errors. ``code`` is a stable, machine-readable identifier."""

    code = "canary_error"

    def __init__(self, message: str, **fields: object) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def __str__(self) -> str:
        return self.message


class ConfigError(CanaryError):
    """A configuration file is missing, malformed or invalid. ``key`` is the dotted key path."""

    code = "config_error"

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message, key=key)
        self.key = key


class MasterKeyError(CanaryError):
    """The master key is missing, unreadable, too permissive or of the wrong size."""

    code = "master_key_error"


class CryptoError(CanaryError):
    """Decryption or authentication of a stored value failed (wrong key or tampered data)."""

    code = "crypto_error"


class StoreError(CanaryError):
    """The control store cannot be reached, migrated or queried."""

    code = "store_error"


class EventRefused(StoreError):
    """The control store refused to record these events (their content, not the store's health): the
    events a source submitted with them are committed; the source should count these and move on
    rather than retry them forever."""

    code = "event_refused"

    def __init__(self, refused: list[tuple[Any, BaseException]]) -> None:
        self.refused = refused
        reasons = sorted({_reason(exc) for _, exc in refused})
        super().__init__(f"the control store refused {len(refused)} event(s): {', '.join(reasons)}")


def _reason(exc: BaseException) -> str:
    state = getattr(exc, "sqlstate", None)
    return f"{type(exc).__name__}{f' ({state})' if state else ''}"


class DatastoreError(CanaryError):
    """A target datastore cannot be reached or does not have the expected shape."""

    code = "datastore_error"


class UnsafeIdentifierError(DatastoreError):
    """A schema, table or column name from config is not a plain, existing identifier."""

    code = "unsafe_identifier"


class SeedError(DatastoreError):
    """Seeding, verifying or retiring canaries failed; nothing was written (the transaction rolled back)."""

    code = "seed_error"


class EmbeddedPostgresError(CanaryError):
    """The embedded PostgreSQL server could not be initialised, started or stopped."""

    code = "embedded_postgres_error"


class ParseError(CanaryError):
    """An input (log line, webhook body, e-mail, packet) could not be parsed. ``source`` says whose."""

    code = "parse_error"

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}", source=source)
        self.source = source


class SignatureError(CanaryError):
    """A webhook signature is missing, malformed or does not verify."""

    code = "signature_error"


class DeliveryError(CanaryError):
    """A sink failed to deliver. ``retry_after`` (seconds) is set when the receiver asked for it;
    ``permanent`` marks errors that retrying cannot fix (e.g. HTTP 400)."""

    code = "delivery_error"

    def __init__(
        self,
        sink: str,
        message: str,
        *,
        retry_after: float | None = None,
        permanent: bool = False,
        status: int | None = None,
    ) -> None:
        super().__init__(f"{sink}: {message}", sink=sink)
        self.sink = sink
        self.retry_after = retry_after
        self.permanent = permanent
        self.status = status


class IncidentError(CanaryError):
    """An incident does not exist or cannot make the requested transition (e.g. ack after resolve)."""

    code = "incident_error"


class DrillError(CanaryError):
    """A drill playbook is invalid or a drill could not run."""

    code = "drill_error"
