"""Shared by the credential-canary tests: registration of generated credentials as canaries (the
runtime they register into is conftest's ``runtime`` fixture), and a raw PostgreSQL client that keeps
every byte a honeypot sends."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from canary.credentials.values import Credential, new_canary, scram_salted_password
from canary.runtime import Runtime
from canary.store.registry import location_key


async def register(rt: Runtime, *creds: Credential, table: str = "public.api_tokens") -> list[int]:
    """Register credentials as canaries placed in ``shop/<table>``; returns their ids in order."""
    async with rt.pool.acquire() as conn:
        ids = await rt.registry.add(conn, [
            new_canary(c, "shop", f"shop/{table}", location={"target": table, "pk": c.cred_id},
                       lookup=location_key("shop", table, c.cred_id))
            for c in creds
        ], None)
    return [i for i, _ in ids]


# -- a raw PostgreSQL client: every byte the honeypot sends, and how long its verdict takes ---------------
@dataclass
class PgTranscript:
    """What a honeypot sent during one login: its messages as (tag, body) in order, and the seconds
    between the client's last authentication message and the honeypot's answer to it."""

    messages: list[tuple[bytes, bytes]] = field(default_factory=list)
    verdict_after: float = 0.0


def startup_packet(user: str, database: str = "postgres") -> bytes:
    params = f"user\0{user}\0database\0{database}\0\0".encode()
    return struct.pack("!II", 8 + len(params), 196608) + params


def password_message(body: bytes) -> bytes:
    return b"p" + struct.pack("!I", 4 + len(body)) + body


async def read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await asyncio.wait_for(reader.readexactly(5), 10)
    (length,) = struct.unpack("!I", head[1:])
    return head[:1], await asyncio.wait_for(reader.readexactly(length - 4), 10)


async def pg_login(port: int, user: str, password: str, *, local_host: str = "127.0.0.1") -> PgTranscript:
    """Log in as ``user`` with ``password`` the way libpq does (SCRAM-SHA-256 with a real proof, or a
    cleartext password, whichever the server asks for), keeping everything the server sends."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(local_host, 0))
    out = PgTranscript()
    try:
        writer.write(startup_packet(user))
        tag, body = await read_message(reader)
        out.messages.append((tag, body))
        (code,) = struct.unpack_from("!I", body)
        if code == 3:
            writer.write(password_message(password.encode() + b"\0"))
            started = time.perf_counter()
        else:
            bare = f"n=,r={base64.b64encode(os.urandom(18)).decode()}"
            first = b"n,," + bare.encode()
            writer.write(password_message(b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first))
            tag, body = await read_message(reader)
            out.messages.append((tag, body))
            server_first = body[4:].decode()
            attrs = dict(a.split("=", 1) for a in server_first.split(","))
            salted = scram_salted_password(password, base64.b64decode(attrs["s"]), int(attrs["i"]))
            without_proof = f"c=biws,r={attrs['r']}"
            client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
            signature = hmac.new(hashlib.sha256(client_key).digest(), f"{bare},{server_first},{without_proof}".encode(),
                                 hashlib.sha256).digest()
            proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode()
            writer.write(password_message(f"{without_proof},p={proof}".encode()))
            started = time.perf_counter()
        out.messages.append(await read_message(reader))
        out.verdict_after = time.perf_counter() - started
        assert await asyncio.wait_for(reader.read(), 10) == b""
    finally:
        writer.close()
    return out


NGINX = "/usr/sbin/nginx"
NGINX_TEMPS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_head(prefix: Path) -> str:
    """The start of an NGINX configuration run from ``prefix`` in the foreground (pid, error log, temp
    paths there; as root its workers stay root, so they can read the test's files)."""
    user = "user root;" if os.geteuid() == 0 else ""
    return f"{user}\nworker_processes 1;\ndaemon off;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log info;\n" \
        "events { worker_connections 256; }\n"


def nginx_temps(prefix: Path) -> str:
    return " ".join(f"{kind}_temp_path {prefix / kind};" for kind in NGINX_TEMPS)


def _closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@contextlib.contextmanager
def running_nginx(prefix: Path, conf_text: str, port: int) -> Iterator[Path]:
    """Debian's NGINX with ``conf_text`` (see :func:`nginx_head`) until it listens on ``port``; stopped
    (its own process) at the end. Yields ``prefix``."""
    for kind in NGINX_TEMPS:
        (prefix / kind).mkdir(exist_ok=True)
    (prefix / "logs").mkdir(exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(conf_text)
    proc = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not (prefix / "nginx.pid").exists() or _closed(port):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "nginx exited"
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
        yield prefix
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()
        shutil.rmtree(prefix / "client_body", ignore_errors=True)
