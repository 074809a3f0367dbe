"""Does recognising a credential, or the honeypot's answer, take longer for a canary?

Prints median/p90 latencies for canary vs unknown values, side by side with their ratio:
  * ``recognise()`` (one blind-index query) against a registry of N credential canaries;
  * the HTTP token honeypot's answer (fixed floor, lookup after the answer);
  * the PostgreSQL honeypot's SCRAM rejection (PBKDF2 for every user, canary or not).

Run: ``python bench/credential_timing.py [--canaries 10000] [--tries 300]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg

from canary.config import HttpHoneypotConfig, from_mapping
from canary.credentials.pg_honeypot import PgHoneypot
from canary.credentials.token_honeypot import TokenHoneypot
from canary.credentials.values import CredentialFactory, new_canary
from canary.crypto import Keyring, generate_key
from canary.runtime import open_runtime
from canary.store.embedded import PostgresServer
from canary.store.registry import ValueKind, location_key, recognise


def _row(label: str, canary: list[float], other: list[float]) -> None:
    mc, mo = statistics.median(canary) * 1000, statistics.median(other) * 1000
    p9c, p9o = statistics.quantiles(canary, n=10)[8] * 1000, statistics.quantiles(other, n=10)[8] * 1000
    print(f"{label:<28} canary median {mc:7.3f} ms  p90 {p9c:7.3f} | unknown median {mo:7.3f} ms  p90 {p9o:7.3f}"
          f" | ratio {mc / mo:5.3f}")


async def main(n_canaries: int, tries: int) -> None:
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="canary-bench-")))
    server.start()
    try:
        admin = await asyncpg.connect(server.dsn())
        await admin.execute("CREATE DATABASE bench_ctl")
        await admin.close()
        data = tempfile.mkdtemp()
        cfg = from_mapping({"canary": {"data_dir": data}, "control": {"dsn": server.dsn("bench_ctl")}})
        keyring = Keyring(generate_key())
        rt = await open_runtime(cfg, keyring=keyring)
        f = CredentialFactory(keyring)
        creds = [f.github_token() for _ in range(n_canaries)]
        async with rt.pool.acquire() as conn, conn.transaction():
            await rt.registry.add(conn, [
                new_canary(c, "shop", "shop/public.tokens", location={"target": "public.tokens", "pk": i},
                           lookup=location_key("shop", "public.tokens", i)) for i, c in enumerate(creds)
            ], None)
        print(f"{n_canaries} credential canaries registered; {tries} tries each, interleaved")

        rc: list[float] = []
        ro: list[float] = []
        for i in range(tries):
            for bucket, value in ((rc, creds[i % len(creds)].secret), (ro, f.github_token().secret)):
                t0 = time.perf_counter()
                await recognise(rt.registry, [(ValueKind.TOKEN, value)])
                bucket.append(time.perf_counter() - t0)
        _row("recognise()", rc, ro)

        rt.pipeline.start()
        hp = TokenHoneypot(HttpHoneypotConfig(enabled=True, port=0, min_response_time=0.02))
        await hp.start(rt)
        hc: list[float] = []
        ho: list[float] = []
        async with aiohttp.ClientSession() as s:
            for i in range(tries):
                for bucket, value in ((hc, creds[i % len(creds)].secret), (ho, f.github_token().secret)):
                    t0 = time.perf_counter()
                    async with s.get(f"http://127.0.0.1:{hp.port}/api/v1/me", headers={"Authorization": f"Bearer {value}"}) as r:
                        await r.read()
                    bucket.append(time.perf_counter() - t0)
        await hp.stop()
        _row("HTTP honeypot (20 ms floor)", hc, ho)

        pg = PgHoneypot("127.0.0.1", 0)
        await pg.start(rt)
        dsn = f.pg_dsn("127.0.0.1", pg.port, "billing")
        async with rt.pool.acquire() as conn:
            await rt.registry.add(conn, [new_canary(dsn, "shop", "shop/public.settings", location={"target": "s", "pk": 1},
                                                    lookup=location_key("shop", "public.settings", "dsn"))], None)
        pc: list[float] = []
        po: list[float] = []
        for _ in range(max(20, tries // 5)):
            for bucket, user, pw in ((pc, dsn.fields["user"], dsn.fields["password"]), (po, "svc_other", "pw")):
                t0 = time.perf_counter()
                try:
                    await asyncpg.connect(host="127.0.0.1", port=pg.port, user=user, password=pw, database="billing", ssl=False)
                except asyncpg.InvalidPasswordError:
                    pass
                bucket.append(time.perf_counter() - t0)
        await pg.stop()
        _row("PostgreSQL honeypot (SCRAM)", pc, po)
        await rt.pipeline.stop()
        await rt.http.close()
        await rt.store.close()
    finally:
        server.destroy()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--canaries", type=int, default=10000)
    ap.add_argument("--tries", type=int, default=300)
    args = ap.parse_args()
    asyncio.run(main(args.canaries, args.tries))
