"""Master key, encryption at rest and blind indexes.

The master key (32 random bytes) comes from ``$CANARY_MASTER_KEY`` (base64) or a key file with mode
0600; never from the config file. Independent sub-keys are derived with HKDF-SHA256:

* ``enc``   AES-256-GCM for values that reveal canaries (e-mail, phone, token, row location);
  the associated data binds a ciphertext to its purpose so one cannot be swapped for another.
* ``index`` HMAC-SHA256 blind indexes: look a presented value up without storing it in plaintext.
* ``token`` derivation of credential canaries, so a presented token can be recognised later.

A stolen registry therefore holds ciphertexts and HMACs only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import stat
import unicodedata
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from canary.errors import CryptoError, MasterKeyError

ENV_MASTER_KEY = "CANARY_MASTER_KEY"
KEY_BYTES = 32
_VERSION = b"\x01"


def generate_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def write_key_file(path: Path, key: bytes) -> None:
    """Write a new key file with mode 0600; refuse to overwrite an existing one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise MasterKeyError(f"key file {path} already exists; refusing to overwrite it") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(base64.b64encode(key).decode() + "\n")


def _decode(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (ValueError, TypeError):
        raise MasterKeyError(f"master key in {where} is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise MasterKeyError(f"master key in {where} must be {KEY_BYTES} bytes, got {len(key)}")
    return key


def load_key(path: Path) -> bytes:
    """The master key from ``$CANARY_MASTER_KEY`` or ``path`` (which must not be group/world readable)."""
    env = os.environ.get(ENV_MASTER_KEY)
    if env:
        return _decode(env, f"${ENV_MASTER_KEY}")
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MasterKeyError(f"no master key: set ${ENV_MASTER_KEY} or run `canary init` to create {path}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MasterKeyError(f"key file {path} is accessible by group or others (mode {oct(st.st_mode & 0o777)}); chmod 600 it")
    return _decode(path.read_text(), str(path))


def same(a: str | bytes, b: str | bytes) -> bool:
    """Constant-time equality of a presented secret, token or MAC with the expected one, whatever the
    sender put in it: text is compared as its UTF-8 (lone surrogates encoded, not refused), so a
    non-ASCII or undecodable value is simply unequal (``hmac.compare_digest`` raises TypeError on
    non-ASCII text, which turned a forged signature into a 500 or hid a forged line)."""
    left = a.encode("utf-8", "surrogatepass") if isinstance(a, str) else a
    right = b.encode("utf-8", "surrogatepass") if isinstance(b, str) else b
    return hmac.compare_digest(left, right)


def normalize(value: str) -> str:
    """Canonical form for blind indexes: NFKC, trimmed, case-folded."""
    return unicodedata.normalize("NFKC", value).strip().casefold()


class Keyring:
    """Sub-keys derived from one master key. ``key_id`` identifies the master key (for rotation)."""

    def __init__(self, master: bytes) -> None:
        if len(master) != KEY_BYTES:
            raise MasterKeyError(f"master key must be {KEY_BYTES} bytes")
        self._enc = AESGCM(self._derive(master, b"canary/enc/v1"))
        self._index = self._derive(master, b"canary/index/v1")
        self._token = self._derive(master, b"canary/token/v1")
        self.key_id = hashlib.sha256(self._derive(master, b"canary/key-id/v1")).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"Keyring(key_id={self.key_id!r})"

    @staticmethod
    def _derive(master: bytes, info: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)

    # -- encryption ----------------------------------------------------------------------
    def encrypt(self, plaintext: bytes | str, purpose: str) -> bytes:
        data = plaintext.encode() if isinstance(plaintext, str) else plaintext
        nonce = secrets.token_bytes(12)
        return _VERSION + nonce + self._enc.encrypt(nonce, data, purpose.encode())

    def decrypt(self, blob: bytes, purpose: str) -> bytes:
        if len(blob) < 29 or blob[:1] != _VERSION:
            raise CryptoError(f"stored value for {purpose} is not a canary ciphertext")
        try:
            return self._enc.decrypt(blob[1:13], blob[13:], purpose.encode())
        except InvalidTag:
            raise CryptoError(f"stored value for {purpose} does not authenticate (wrong master key or tampered)") from None

    def decrypt_text(self, blob: bytes, purpose: str) -> str:
        return self.decrypt(blob, purpose).decode()

    # -- blind indexes and derivation ----------------------------------------------------
    def blind_index(self, value: str, purpose: str) -> bytes:
        """HMAC of the normalised value, domain-separated by purpose (16 bytes).

        Any ``str`` has an index, so a value decoded from hostile bytes (lone surrogates from
        ``surrogateescape``) is simply no canary instead of an exception: ``surrogatepass`` encodes
        every valid string exactly as UTF-8 does and lone surrogates to bytes no valid string has."""
        msg = purpose.encode() + b"\x00" + normalize(value).encode("utf-8", "surrogatepass")
        return hmac.new(self._index, msg, hashlib.sha256).digest()[:16]

    def blind_indexer(self, purpose: str) -> Callable[[str], bytes]:
        """``blind_index(·, purpose)`` as a function, for hashing many values of one purpose (the copy
        sweep hashes millions): the HMAC's inner and outer SHA-256 states (RFC 2104, the key padded to
        the 64-byte block) and the purpose prefix are computed once, and ASCII values skip NFKC (which
        leaves ASCII unchanged; ``casefold`` of ASCII is ``lower``). Same digests as :meth:`blind_index`."""
        key = self._index.ljust(64, b"\x00")
        inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        inner.update(purpose.encode() + b"\x00")
        outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

        def index(value: str) -> bytes:
            h = inner.copy()
            h.update((value.strip().lower() if value.isascii() else normalize(value)).encode("utf-8", "surrogatepass"))
            o = outer.copy()
            o.update(h.digest())
            return o.digest()[:16]

        return index

    def derive(self, purpose: str, *parts: str, length: int = 32) -> bytes:
        """Deterministic secret bytes for a credential canary (recognisable later, stored nowhere)."""
        msg = "\x00".join((purpose, *parts)).encode()
        out = b""
        counter = 0
        while len(out) < length:
            out += hmac.new(self._token, msg + counter.to_bytes(4, "big"), hashlib.sha256).digest()
            counter += 1
        return out[:length]

    def mac(self, data: bytes, purpose: str) -> bytes:
        return hmac.new(self._token, purpose.encode() + b"\x00" + data, hashlib.sha256).digest()
