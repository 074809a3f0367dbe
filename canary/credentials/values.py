"""Credential canaries: realistic values derived from the master key, and their recognition.

Every value is derived (``Keyring.derive``) from a ``cred_id`` the caller keeps (a seeder stores it
in the canary's encrypted location), so no plaintext secret is stored anywhere. Registering a
credential stores only AES-GCM ciphertexts and HMAC blind indexes of :attr:`Credential.values`
(``Registry.add(..., NewCanary(values=cred.values))``); recognising a presented value is a blind-index
lookup (:func:`recognise`). Value kinds are stable identifiers that persist in ``canary_values``:

=================  ===========================================================
``aws_key_id``      AWS access key id (``AKIA`` + 16 base32 characters)
``aws_secret``      AWS secret access key (40 characters)
``token``           any bearer-style secret: GitHub ``ghp_``, Stripe ``sk_live_``, JWT, opaque token
``dsn_user``        the user of a canary PostgreSQL connection string (honeypot or real datastore)
``pg_role``         a canary login role on a real datastore
=================  ===========================================================

PostgreSQL passwords are derived from the role name (:meth:`CredentialFactory.pg_password`), so the
PostgreSQL honeypot can verify a SCRAM proof for any presented user with the master key alone.

Usage by a seeder::

    factory = CredentialFactory(keyring)
    cred = factory.github_token()            # cred.secret goes into the table / file
    canary = new_canary(cred, "shop", "shop/public.api_tokens", location={...}, lookup=location_key(...))
    await registry.add(conn, [canary], deployment_id)
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import hashlib
import hmac
import json
import secrets
import string
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import structlog

from canary.crypto import Keyring
from canary.store.registry import NewCanary, ValueKind

log = structlog.get_logger("canary.credentials")

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
BASE32 = string.ascii_uppercase + "234567"
AWS_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"
SCRAM_ITERATIONS = 4096  # PostgreSQL's default scram_iterations
CREDENTIAL_KIND = "credential"  # canaries.kind of every credential canary


class CredentialType(enum.StrEnum):
    AWS_KEY = "aws_key"
    GITHUB_TOKEN = "github_token"
    STRIPE_KEY = "stripe_key"
    JWT = "jwt"
    BEARER = "bearer"
    PG_DSN = "pg_dsn"
    PG_ROLE = "pg_role"




@dataclasses.dataclass(frozen=True, slots=True)
class Credential:
    """One generated credential. ``secret`` is what someone would present; ``fields`` holds every
    part (``access_key_id`` / ``secret_access_key``, ``user`` / ``password`` / ``dsn``...);
    ``values`` are the (kind, plaintext) pairs to register. The repr never shows a secret."""

    type: CredentialType
    cred_id: str
    secret: str = dataclasses.field(repr=False)
    fields: Mapping[str, str] = dataclasses.field(repr=False, default_factory=dict)
    values: tuple[tuple[str, str], ...] = dataclasses.field(repr=False, default=())

    def __repr__(self) -> str:
        return f"Credential(type={self.type!s}, cred_id={self.cred_id!r})"


def new_cred_id() -> str:
    return "cr_" + secrets.token_hex(8)


def encode_base62(data: bytes, length: int) -> str:
    """``length`` base62 characters from (derived) bytes; bias is negligible with 8 spare bytes."""
    n = int.from_bytes(data, "big")
    out = []
    for _ in range(length):
        n, r = divmod(n, 62)
        out.append(BASE62[r])
    return "".join(out)


def base62_number(n: int, width: int) -> str:
    """``n`` in base62, most significant digit first, zero-padded to ``width`` (GitHub checksum)."""
    digits = []
    while n:
        n, r = divmod(n, 62)
        digits.append(BASE62[r])
    return "".join(reversed(digits)).rjust(width, "0")


def _pick(data: bytes, alphabet: str) -> str:
    return "".join(alphabet[b % len(alphabet)] for b in data)


def github_checksum(random_part: str) -> str:
    """CRC32 of the 30 random characters, as 6 base62 digits (GitHub's 2021 token format)."""
    return base62_number(binascii.crc32(random_part.encode()), 6)


def github_checksum_ok(token: str) -> bool:
    """True when ``token`` has a GitHub prefix, 36 base62 characters and a matching checksum."""
    prefix, _, body = token.partition("_")
    if prefix not in {"ghp", "gho", "ghu", "ghs", "ghr"} or len(body) != 36 or not all(c in BASE62 for c in body):
        return False
    return hmac.compare_digest(github_checksum(body[:30]), body[30:])


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- SCRAM-SHA-256 (RFC 5802 / RFC 7677, as PostgreSQL implements it) ----------------------------
def scram_salted_password(password: str, salt: bytes, iterations: int = SCRAM_ITERATIONS) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)


def scram_keys(salted: bytes) -> tuple[bytes, bytes]:
    """(StoredKey, ServerKey) of a salted password."""
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return hashlib.sha256(client_key).digest(), hmac.new(salted, b"Server Key", hashlib.sha256).digest()


def scram_verifier(password: str, salt: bytes, iterations: int = SCRAM_ITERATIONS) -> str:
    """PostgreSQL's stored form ``SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`` (base64), for
    ``CREATE ROLE ... PASSWORD '<verifier>'`` without the plaintext reaching the server or its log."""
    stored, server = scram_keys(scram_salted_password(password, salt, iterations))

    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored)}:{b64(server)}"


def scram_proof_matches(stored_key: bytes, auth_message: bytes, proof: bytes) -> bool:
    """RFC 5802 server check: H(ClientProof XOR HMAC(StoredKey, AuthMessage)) == StoredKey."""
    signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
    if len(proof) != len(signature):
        return False
    client_key = bytes(a ^ b for a, b in zip(proof, signature))
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), stored_key)


class CredentialFactory:
    """Derives credential canaries from the master key. Same ``cred_id`` (and arguments), same value."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def __repr__(self) -> str:
        return f"CredentialFactory(key_id={self.keyring.key_id!r})"

    def _bytes(self, purpose: str, cred_id: str, n: int) -> bytes:
        return self.keyring.derive(f"credential/{purpose}", cred_id, length=n)

    def aws_key(self, cred_id: str | None = None) -> Credential:
        """An IAM user access key pair: ``AKIA`` + 16 base32 characters, 40-character secret."""
        cid = cred_id or new_cred_id()
        key_id = "AKIA" + _pick(self._bytes("aws-key-id", cid, 16), BASE32)
        secret = _pick(self._bytes("aws-secret", cid, 40), AWS_SECRET_ALPHABET)
        return Credential(
            CredentialType.AWS_KEY, cid, key_id,
            {"access_key_id": key_id, "secret_access_key": secret},
            ((ValueKind.AWS_KEY_ID, key_id), (ValueKind.AWS_SECRET, secret)),
        )

    def github_token(self, cred_id: str | None = None, prefix: str = "ghp") -> Credential:
        """GitHub-style token: prefix, ``_``, 30 random base62 characters, 6-character CRC32 checksum."""
        if prefix not in {"ghp", "gho", "ghu", "ghs", "ghr"}:
            raise ValueError(f"unknown GitHub token prefix {prefix!r}")
        cid = cred_id or new_cred_id()
        body = encode_base62(self._bytes(f"github/{prefix}", cid, 32), 30)
        token = f"{prefix}_{body}{github_checksum(body)}"
        return Credential(CredentialType.GITHUB_TOKEN, cid, token, {"token": token}, ((ValueKind.TOKEN, token),))

    def stripe_key(self, cred_id: str | None = None, live: bool = True, length: int = 99) -> Credential:
        """Stripe-style secret key: ``sk_live_`` (or ``sk_test_``) + base62."""
        if not 24 <= length <= 200:
            raise ValueError("Stripe key length must be between 24 and 200 characters")
        cid = cred_id or new_cred_id()
        body = encode_base62(self._bytes("stripe", cid, length + 8), length)
        key = ("sk_live_" if live else "sk_test_") + body
        return Credential(CredentialType.STRIPE_KEY, cid, key, {"secret_key": key}, ((ValueKind.TOKEN, key),))

    def jwt(
        self,
        cred_id: str | None = None,
        *,
        issuer: str = "https://auth.internal",
        subject: str = "svc-reporting",
        audience: str = "internal-api",
        issued_at: int | None = None,
        lifetime: int = 365 * 86400,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> Credential:
        """An HS256 JWT (RFC 7519) with realistic claims, signed with a key derived for ``cred_id``.
        Pass ``issued_at`` to reproduce the same token later."""
        cid = cred_id or new_cred_id()
        iat = int(time.time()) if issued_at is None else issued_at
        claims = {
            "iss": issuer, "sub": subject, "aud": audience, "iat": iat, "nbf": iat, "exp": iat + lifetime,
            "jti": self._bytes("jwt-id", cid, 16).hex(), **(extra_claims or {}),
        }
        header = {"alg": "HS256", "typ": "JWT"}
        signing_input = _b64url(json.dumps(header, separators=(",", ":")).encode()) + "." + _b64url(
            json.dumps(claims, separators=(",", ":")).encode()
        )
        sig = hmac.new(self._bytes("jwt-key", cid, 32), signing_input.encode(), hashlib.sha256).digest()
        token = signing_input + "." + _b64url(sig)
        return Credential(CredentialType.JWT, cid, token, {"token": token}, ((ValueKind.TOKEN, token),))

    def bearer(self, cred_id: str | None = None, prefix: str = "") -> Credential:
        """An opaque bearer token: optional prefix + 43 URL-safe base64 characters (256 bits)."""
        cid = cred_id or new_cred_id()
        token = prefix + _b64url(self._bytes("bearer", cid, 32))
        return Credential(CredentialType.BEARER, cid, token, {"token": token}, ((ValueKind.TOKEN, token),))

    def pg_role_name(self, cred_id: str, prefix: str = "svc_etl") -> str:
        return f"{prefix}_{encode_base62(self._bytes('pg-role', cred_id, 12), 6).lower()}"

    def pg_password(self, user: str) -> str:
        """The derived password of a canary PostgreSQL user (derivable from the user name alone)."""
        return encode_base62(self.keyring.derive("credential/pg-password", user, length=32), 28)

    def scram_salt(self, user: str) -> bytes:
        """A stable per-user salt (like a real server's stored verifier: same user, same salt)."""
        return self.keyring.derive("credential/pg-scram-salt", user, length=16)

    def pg_role(self, cred_id: str | None = None, *, name: str | None = None, prefix: str = "svc_etl") -> Credential:
        """A login role for a real datastore; ``fields['verifier']`` is the SCRAM verifier to create it with."""
        cid = cred_id or new_cred_id()
        user = name or self.pg_role_name(cid, prefix)
        password = self.pg_password(user)
        return Credential(
            CredentialType.PG_ROLE, cid, password,
            {"user": user, "password": password, "verifier": scram_verifier(password, self.scram_salt(user))},
            ((ValueKind.PG_ROLE, user),),
        )

    def pg_dsn(
        self,
        host: str,
        port: int,
        database: str,
        cred_id: str | None = None,
        *,
        user: str | None = None,
        prefix: str = "svc_etl",
        params: Mapping[str, str] | None = None,
    ) -> Credential:
        """``postgresql://user:password@host:port/db`` pointing at the PostgreSQL honeypot or a datastore."""
        cid = cred_id or new_cred_id()
        name = user or self.pg_role_name(cid, prefix)
        password = self.pg_password(name)
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in (params or {}).items())
        dsn = f"postgresql://{quote(name, safe='')}:{quote(password, safe='')}@{host}:{port}/{quote(database, safe='')}"
        dsn += f"?{query}" if query else ""
        return Credential(
            CredentialType.PG_DSN, cid, dsn,
            {"user": name, "password": password, "host": host, "port": str(port), "database": database, "dsn": dsn},
            ((ValueKind.DSN_USER, name),),
        )


def new_canary(
    cred: Credential, datastore: str, label: str, *, location: Mapping[str, Any], lookup: str
) -> NewCanary:
    """The registry entry of a placed credential; ``location`` gets the ``cred_id`` and type added."""
    loc = {**location, "cred_id": cred.cred_id, "credential": str(cred.type)}
    return NewCanary(kind=CREDENTIAL_KIND, datastore=datastore, label=label, location=loc, lookup=lookup,
                     values=tuple((str(k), v) for k, v in cred.values))

