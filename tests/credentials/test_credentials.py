"""Credential canaries: realistic formats, derivation from the master key, recognition by blind index."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import zlib
from collections.abc import Callable
from urllib.parse import urlsplit

import asyncpg
import pytest

from canary.credentials.recognise import fingerprint, presented_candidates
from canary.credentials.values import BASE62, CredentialFactory, github_checksum_ok, new_canary, scram_verifier
from canary.crypto import Keyring, generate_key
from canary.store import ControlStore
from canary.store.registry import Registry, ValueKind, location_key, recognise


def _b62(n: int) -> str:
    out = ""
    while n:
        n, r = divmod(n, 62)
        out = BASE62[r] + out
    return out.rjust(6, "0")


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda f: f.aws_key().fields["access_key_id"], r"^AKIA[A-Z2-7]{16}$"),
        (lambda f: f.aws_key().fields["secret_access_key"], r"^[A-Za-z0-9+/]{40}$"),
        (lambda f: f.github_token().secret, r"^ghp_[0-9A-Za-z]{36}$"),
        (lambda f: f.stripe_key().secret, r"^sk_live_[0-9A-Za-z]{99}$"),
        (lambda f: f.bearer().secret, r"^[A-Za-z0-9_-]{43}$"),
        (lambda f: f.pg_role().fields["user"], r"^svc_etl_[0-9a-z]{6}$"),
        (lambda f: f.pg_dsn("127.0.0.1", 6543, "billing").secret,
         r"^postgresql://svc_etl_[0-9a-z]{6}:[0-9A-Za-z]{28}@127\.0\.0\.1:6543/billing$"),
    ],
)
def test_formats_look_real(keyring: Keyring, make: Callable[[CredentialFactory], str], pattern: str) -> None:
    """Each generated credential has the documented shape of the real thing."""
    assert re.match(pattern, make(CredentialFactory(keyring)))


def test_github_checksum_is_crc32_of_random_part_in_base62(keyring: Keyring) -> None:
    """The last 6 characters are CRC32(random 30) in base62; a changed character breaks the checksum."""
    tok = CredentialFactory(keyring).github_token().secret
    body = tok[4:]
    assert body[30:] == _b62(zlib.crc32(body[:30].encode()))
    assert github_checksum_ok(tok)
    flipped = tok[:10] + ("a" if tok[10] != "a" else "b") + tok[11:]
    assert not github_checksum_ok(flipped)
    assert not github_checksum_ok("ghx_" + body)


def test_jwt_is_hs256_with_realistic_claims(keyring: Keyring) -> None:
    """The JWT has an HS256 header, iss/sub/aud/iat/exp/jti claims and a signature that verifies
    with the key derived for its cred_id (and not with another master key)."""
    f = CredentialFactory(keyring)
    tok = f.jwt("cr_1", issued_at=1_700_000_000).secret
    h, c, s = tok.split(".")
    pad = lambda x: x + "=" * (-len(x) % 4)  # noqa: E731
    assert json.loads(base64.urlsafe_b64decode(pad(h))) == {"alg": "HS256", "typ": "JWT"}
    claims = json.loads(base64.urlsafe_b64decode(pad(c)))
    assert {"iss", "sub", "aud", "iat", "exp", "jti"} <= set(claims) and claims["exp"] > claims["iat"]
    key = keyring.derive("credential/jwt-key", "cr_1", length=32)
    assert hmac.compare_digest(base64.urlsafe_b64decode(pad(s)), hmac.new(key, f"{h}.{c}".encode(), hashlib.sha256).digest())
    other = CredentialFactory(Keyring(generate_key())).jwt("cr_1", issued_at=1_700_000_000).secret
    assert other != tok


def test_derivation_is_deterministic_per_key_and_id(keyring: Keyring) -> None:
    """Same master key and cred_id give the same value; another id or key gives another value."""
    f = CredentialFactory(keyring)
    assert f.aws_key("cr_a").fields == f.aws_key("cr_a").fields
    assert f.github_token("cr_a").secret != f.github_token("cr_b").secret
    assert CredentialFactory(Keyring(generate_key())).github_token("cr_a").secret != f.github_token("cr_a").secret
    dsn = f.pg_dsn("h", 5432, "d", "cr_a")
    assert f.pg_password(dsn.fields["user"]) == dsn.fields["password"]


def test_repr_hides_secrets(keyring: Keyring) -> None:
    """Neither the credential nor the factory reveals a secret in its repr."""
    cred = CredentialFactory(keyring).pg_dsn("127.0.0.1", 5432, "db")
    text = repr(cred) + str(cred) + repr(CredentialFactory(keyring))
    assert cred.fields["password"] not in text and cred.secret not in text


async def test_scram_verifier_is_accepted_by_postgresql(keyring: Keyring, target_dsn: str) -> None:
    """A role created with the SCRAM verifier (no plaintext sent) logs in with the derived password."""
    role = CredentialFactory(keyring).pg_role(name="svc_etl_verif")
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute(f"CREATE ROLE svc_etl_verif LOGIN PASSWORD '{role.fields['verifier']}'")
        u = urlsplit(target_dsn)
        user_conn = await asyncpg.connect(host=u.hostname, port=u.port, database=u.path.lstrip("/"),
                                          user="svc_etl_verif", password=role.fields["password"], ssl=False)
        assert await user_conn.fetchval("SELECT current_user") == "svc_etl_verif"
        await user_conn.close()
    finally:
        await conn.execute("DROP ROLE IF EXISTS svc_etl_verif")
        await conn.close()
    assert scram_verifier("pw", b"s" * 16).startswith("SCRAM-SHA-256$4096:")


async def test_recognition_by_blind_index_without_plaintext(store: ControlStore, keyring: Keyring) -> None:
    """Registered credentials are found from the presented value; the registry holds no plaintext;
    unknown and retired values are not matched."""
    f = CredentialFactory(keyring)
    reg = Registry(store.pool, keyring)
    aws, tok, dsn = f.aws_key(), f.github_token(), f.pg_dsn("127.0.0.1", 6543, "billing")
    async with store.pool.acquire() as conn, conn.transaction():
        ids = await reg.add(conn, [
            new_canary(c, "shop", "shop/public.api_keys", location={"target": "public.api_keys", "pk": i},
                       lookup=location_key("shop", "public.api_keys", i))
            for i, c in enumerate((aws, tok, dsn))
        ], None)
    dump = " ".join(str(bytes(r["value_enc"])) + str(bytes(r["value_idx"])) for r in await store.pool.fetch("SELECT * FROM canary_values"))
    assert aws.secret not in dump and tok.secret not in dump
    cands = presented_candidates([aws.secret, tok.secret, "ghp_not_a_canary", aws.fields["secret_access_key"]])
    found = await recognise(reg, [*cands, (ValueKind.DSN_USER, dsn.fields["user"])])
    assert found[(ValueKind.AWS_KEY_ID, aws.secret)].canary_id == ids[0][0]
    assert found[(ValueKind.AWS_SECRET, aws.fields["secret_access_key"])].canary_id == ids[0][0]
    assert found[(ValueKind.TOKEN, tok.secret)].canary_id == ids[1][0]
    assert found[(ValueKind.DSN_USER, dsn.fields["user"])].canary_id == ids[2][0]
    assert not any(v == "ghp_not_a_canary" for _, v in found)
    assert (await reg.by_value("token", tok.secret)) is not None
    async with store.pool.acquire() as conn:
        await reg.retire(conn, [ids[1][0]])
    assert (ValueKind.TOKEN, tok.secret) not in await recognise(reg, cands)
    assert fingerprint(keyring, tok.secret) != fingerprint(Keyring(generate_key()), tok.secret)
