"""Master key handling, encryption at rest and blind indexes."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from canary.crypto import ENV_MASTER_KEY, Keyring, generate_key, load_key, same, write_key_file
from canary.errors import CryptoError, MasterKeyError


def test_roundtrip_and_purpose_binding(keyring: Keyring) -> None:
    """A ciphertext decrypts only under the purpose it was written for."""
    blob = keyring.encrypt("minji.kim@canary-mail.test", "value:email")
    assert b"minji" not in blob
    assert keyring.decrypt_text(blob, "value:email") == "minji.kim@canary-mail.test"
    with pytest.raises(CryptoError):
        keyring.decrypt(blob, "value:phone")


def test_tampering_and_wrong_key_are_detected(keyring: Keyring) -> None:
    """A flipped bit or another master key fails authentication instead of returning garbage."""
    blob = bytearray(keyring.encrypt("secret", "p"))
    blob[-1] ^= 1
    with pytest.raises(CryptoError, match="does not authenticate"):
        keyring.decrypt(bytes(blob), "p")
    with pytest.raises(CryptoError):
        Keyring(generate_key()).decrypt(keyring.encrypt("secret", "p"), "p")


def test_blind_index_is_normalised_keyed_and_domain_separated(keyring: Keyring) -> None:
    """Case and spacing do not matter; purposes and keys give unrelated indexes."""
    a = keyring.blind_index(" Minji.Kim@Canary-Mail.TEST ", "value:email")
    assert a == keyring.blind_index("minji.kim@canary-mail.test", "value:email")
    assert a != keyring.blind_index("minji.kim@canary-mail.test", "value:phone")
    assert a != Keyring(generate_key()).blind_index("minji.kim@canary-mail.test", "value:email")
    assert len(a) == 16


def test_every_string_has_a_blind_index(keyring: Keyring) -> None:
    """Text decoded from hostile bytes (lone surrogates from surrogateescape, as an SMTP RCPT of
    b"\\xed\\xa0\\x80@..." gives) is no canary, never an exception; both index paths agree and valid
    text keeps its UTF-8 index."""
    hostile = b"\xed\xa0\x80@canary-mail.test".decode("utf-8", "surrogateescape")
    indexer = keyring.blind_indexer("value:email")
    assert keyring.blind_index(hostile, "value:email") == indexer(hostile)
    assert keyring.blind_index(hostile, "value:email") != keyring.blind_index("@canary-mail.test", "value:email")
    assert keyring.blind_index("김민지@canary-mail.test", "value:email") == indexer("김민지@canary-mail.test")


def test_same_compares_anything_a_sender_sends() -> None:
    """Presented signatures and tokens are compared in constant time whatever they hold: non-ASCII or
    undecodable text is unequal, never a TypeError (which answered a forged Twilio signature with 500)."""
    assert same("abc", "abc") and same(b"abc", "abc") and not same("abc", "abd")
    assert not same("\x80", "ab") and not same("é" * 3, "abc")
    assert not same(b"\xed\xa0\x80".decode("utf-8", "surrogateescape"), "abc")


def test_derivation_is_deterministic_per_key(keyring: Keyring) -> None:
    """Credential material is re-derivable from the master key alone."""
    assert keyring.derive("token", "cy_1") == keyring.derive("token", "cy_1")
    assert keyring.derive("token", "cy_1") != keyring.derive("token", "cy_2")
    assert len(keyring.derive("token", "x", length=70)) == 70


def test_key_file_must_be_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A group- or world-readable key file is refused; a 0600 one loads; the key never shows in errors."""
    monkeypatch.delenv(ENV_MASTER_KEY, raising=False)
    path = tmp_path / "master.key"
    key = generate_key()
    write_key_file(path, key)
    assert load_key(path) == key
    with pytest.raises(MasterKeyError, match="refusing to overwrite"):
        write_key_file(path, generate_key())
    os.chmod(path, 0o644)
    with pytest.raises(MasterKeyError) as err:
        load_key(path)
    assert base64.b64encode(key).decode() not in str(err.value)
    with pytest.raises(MasterKeyError, match="canary init"):
        load_key(tmp_path / "absent.key")


def test_env_key_wins_and_is_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$CANARY_MASTER_KEY is used when set; a short or non-base64 value is a clear error."""
    key = generate_key()
    monkeypatch.setenv(ENV_MASTER_KEY, base64.b64encode(key).decode())
    assert load_key(tmp_path / "absent.key") == key
    monkeypatch.setenv(ENV_MASTER_KEY, base64.b64encode(b"short").decode())
    with pytest.raises(MasterKeyError, match="32 bytes"):
        load_key(tmp_path / "absent.key")
    monkeypatch.setenv(ENV_MASTER_KEY, "!!!not base64!!!")
    with pytest.raises(MasterKeyError, match="base64"):
        load_key(tmp_path / "absent.key")


def test_keyring_repr_hides_material(keyring: Keyring) -> None:
    """The keyring's repr shows only the key id."""
    assert repr(keyring) == f"Keyring(key_id={keyring.key_id!r})"
