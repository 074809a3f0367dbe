"""Trickle seeding: canaries arrive one by one as sign-ups would (own transactions, keys from the
sequence, created at insertion, updated later like real rows), and a run killed at any point is
resumed without duplicates or orphans."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from seeder_helpers import ALL_SHOP_TABLES, Shop, add_orders, checksum, checksums
from testkit import MakeConfig, OpenRuntime

from canary.app.cli import main
from canary.config import Config
from canary.crypto import Keyring, generate_key, write_key_file
from canary.errors import CryptoError
from canary.health.scheduler import CoverageScheduler
from canary.seeding import trickle
from canary.seeding.postgres import PostgresSeeder
from canary.seeding.rotation import rotate
from canary.store import ControlStore
from canary.store.registry import Registry

MEMBERS = """
CREATE TABLE public.members (
    id bigserial PRIMARY KEY, full_name text NOT NULL, email text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL, updated_at timestamptz
);
SELECT setseed(0.17);
INSERT INTO public.members (full_name, email, created_at)
SELECT 'Member ' || g, 'member' || g || '@example.org',
       date_trunc('second', timestamptz '2024-01-01 00:00+00' + g * interval '37 minutes' + (random() * 900) * interval '1 second')
FROM generate_series(1, 1200) g;
-- half the members changed something later (updated_at moved on), the rest show their insert time
UPDATE public.members SET updated_at = CASE WHEN id % 2 = 0
    THEN date_trunc('second', created_at + (random() * 40) * interval '1 day') ELSE created_at END;
"""
FAR = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3650)


def _config(make_config: MakeConfig, dsn: str, count: int, over: str = "2h") -> Config:
    return make_config(datastores=[{"name": "shop", "dsn": dsn, "tables": [
        {"table": "public.members", "count": count, "mode": "trickle", "trickle_over": over}]}])


async def _rows(dsn: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET row_security = off")
        return await conn.fetch("SELECT id, xmin::text::bigint AS xmin, created_at, updated_at FROM public.members ORDER BY id")
    finally:
        await conn.close()


async def _slots(store: ControlStore) -> list[asyncpg.Record]:
    return await store.pool.fetch("SELECT kind, state, due_at, canary_id FROM trickle_slots ORDER BY slot")


async def test_trickle_canaries_arrive_one_by_one_like_sign_ups(
    target_dsn: str, make_config: MakeConfig, store: ControlStore, keyring: Keyring
) -> None:
    """`canary seed` schedules the sign-ups over the configured period (nothing is written before its
    time); each due one is its own transaction (its own xmin), takes the sequence's next key and the
    transaction's time in whole seconds as the real rows have, shows updated_at = created_at like the
    members never updated; later updates move updated_at and xmin as real members' do, and verify still
    finds every canary unmodified. Runs are idempotent; retire leaves the table as it was."""
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute(MEMBERS)
    finally:
        await conn.close()
    before = await checksum(target_dsn, "public.members")
    real_max = max(r["id"] for r in await _rows(target_dsn))
    registry = Registry(store.pool, keyring)
    cfg = _config(make_config, target_dsn, 6)
    seeder = PostgresSeeder.from_config(cfg, "shop", registry, seed=5)

    plan = await seeder.plan()
    (tp,) = plan.targets
    assert tp.mode == "trickle" and plan.to_add == 0 and len(tp.rows) == 1
    assert any("own xmin" in t for t in tp.traces) and any("updated after their insert" in t for t in tp.traces)
    assert "6 more to schedule" in tp.schedule

    started = dt.datetime.now(dt.timezone.utc)
    await seeder.apply()
    slots = await _slots(store)
    assert [s["kind"] for s in slots] == ["signup"] * 6
    assert all(started <= s["due_at"] <= started + dt.timedelta(hours=2, seconds=5) for s in slots)
    assert await registry.active("shop") == [], "nothing is written before its time"
    await seeder.apply()  # idempotent: the schedule is complete
    assert len(await _slots(store)) == 6

    t0 = dt.datetime.now(dt.timezone.utc)
    result = await seeder.trickle(now=FAR)
    t1 = dt.datetime.now(dt.timezone.utc)
    assert result.signups == {"public.members": 6} and not result.failed, result
    canaries = {int(c.location["pk"]) for c in await registry.active("shop")}
    assert len(canaries) == 6
    rows = {r["id"]: r for r in await _rows(target_dsn)}
    new = [rows[i] for i in sorted(canaries)]
    assert sorted(canaries) == list(range(real_max + 1, real_max + 7)), "keys are the sequence's next values"
    assert len({r["xmin"] for r in new}) == 6, "every sign-up is its own transaction"
    for r in new:
        assert t0 - dt.timedelta(seconds=1) <= r["created_at"] <= t1
        assert r["created_at"].microsecond == 0, "whole seconds, as the real rows have"
        assert r["updated_at"] == r["created_at"], "a new sign-up has not been updated yet"
    assert (await seeder.verify()).ok

    again = await seeder.trickle(now=FAR)
    assert again.signups == {}
    updates = [s for s in await _slots(store) if s["kind"] == "update"]
    assert again.updates.get("public.members", 0) == len(updates) and 1 <= len(updates) <= 6
    after = {r["id"]: r for r in await _rows(target_dsn)}
    moved = [i for i in canaries if after[i]["xmin"] != rows[i]["xmin"]]
    assert len(moved) == len(updates)
    # written at the update's own time (here a second after the sign-up, in production days later)
    assert all(after[i]["updated_at"] >= rows[i]["updated_at"] and after[i]["updated_at"].microsecond == 0 for i in moved)
    assert (await seeder.verify()).ok, "the canaries' fingerprints follow their own updates"
    assert (await seeder.trickle(now=FAR)).updates == {}

    await seeder.retire()
    assert await checksum(target_dsn, "public.members") == before
    assert await _slots(store) == []


HOLD = """
CREATE FUNCTION public.hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_advisory_xact_lock_shared(4242); RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER hold AFTER INSERT ON public.members DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION public.hold_commit();
"""

RUN = textwrap.dedent("""
    import asyncio, datetime as dt, json, sys
    from canary.config import from_mapping
    from canary.seeding.postgres import PostgresSeeder
    from canary.store import ControlStore
    from canary.store.registry import Registry
    from testkit import TEST_KEYRING

    async def main():
        store = ControlStore(from_mapping(json.loads(sys.argv[1])))
        await store.open()
        seeder = PostgresSeeder.from_config(from_mapping(json.loads(sys.argv[1])), "shop", Registry(store.pool, TEST_KEYRING), seed=9)
        await seeder.trickle(now=dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc))

    asyncio.run(main())
""")


async def _wait(what: Any, timeout: float = 60.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await what()
        if got:
            return got
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_a_run_killed_before_or_after_the_datastore_commit_resumes_without_duplicates(
    target_dsn: str, make_config: MakeConfig, store: ControlStore, keyring: Keyring, tmp_path: Path
) -> None:
    """A trickle run is killed (SIGKILL) while its sign-up's datastore COMMIT waits (a deferred trigger
    holds it on a lock): once with the datastore transaction lost, once with it committed after the
    process died. Each time the control store has the canary 'inflight'; the next run settles it by
    what the datastore holds (withdrawn and written again / kept) and goes on. In the end there are
    exactly `count` canaries, each with its row, no registry entry without a row, verify is clean and
    retire restores the table."""
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute(MEMBERS)
        await conn.execute(HOLD)
    finally:
        await conn.close()
    before = await checksum(target_dsn, "public.members")
    registry = Registry(store.pool, keyring)
    cfg = _config(make_config, target_dsn, 3, over="1s")
    seeder = PostgresSeeder.from_config(cfg, "shop", registry, seed=5)
    await seeder.trickle(schedule=True, now=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc))  # schedule only
    slots = await _slots(store)
    assert [s["state"] for s in slots] == ["pending"] * 3
    first = await seeder.trickle(now=slots[0]["due_at"])  # the first sign-up arms the table
    assert first.signups == {"public.members": 1}
    holder = await asyncpg.connect(target_dsn)
    await holder.execute("SELECT pg_advisory_lock(4242)")
    script = tmp_path / "run.py"
    script.write_text(RUN)
    mapping = json.dumps({"canary": {"data_dir": str(tmp_path)}, "control": {"dsn": cfg.control.dsn.reveal()},
                          "datastores": [{"name": "shop", "dsn": target_dsn, "tables": [
                              {"table": "public.members", "count": 3, "mode": "trickle", "trickle_over": "1s"}]}]})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}

    async def killed_at_commit() -> int:
        """Run trickle in a child process until its datastore COMMIT waits on the lock; kill it."""
        proc = subprocess.Popen([sys.executable, str(script), mapping], env=env)
        try:
            pid = await _wait(lambda: holder.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'"))
            await _wait(lambda: store.pool.fetchval("SELECT count(*) FROM trickle_slots WHERE state = 'inflight'"))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        return int(pid)

    # 1. the datastore loses the transaction (its connection dies with the process)
    pid = await killed_at_commit()
    await holder.execute("SELECT pg_terminate_backend($1)", pid)
    await _wait(lambda: holder.fetchval("SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)", pid))
    assert len(await registry.active("shop")) == 2 and len(await _rows(target_dsn)) == 1201, "registered, row gone"

    # 2. the next run settles it (withdrawn, pending), writes it again and is killed at the same point;
    #    this time the datastore commits after the process died
    pid = await killed_at_commit()
    await holder.execute("SELECT pg_advisory_unlock(4242)")
    await _wait(lambda: holder.fetchval("SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1 AND state = 'active')", pid))
    assert len(await _rows(target_dsn)) == 1202
    assert [s["state"] for s in await _slots(store) if s["kind"] == "signup"] == ["done", "inflight", "pending"]

    # 3. resumed: the second sign-up is kept as it is, the third written
    result = await seeder.trickle(now=FAR)
    assert result.settled == 1 and result.signups == {"public.members": 1}
    active = await registry.active("shop")
    rows = await _rows(target_dsn)
    assert len(active) == 3 and len(rows) == 1203
    assert {int(c.location["pk"]) for c in active} == {r["id"] for r in rows[-3:]}
    assert [s["state"] for s in await _slots(store) if s["kind"] == "signup"] == ["done"] * 3
    assert (await seeder.verify()).ok
    await holder.close()
    await seeder.retire()
    assert await checksum(target_dsn, "public.members") == before


async def test_a_trickle_customers_orders_come_later_each_in_its_own_transaction(
    shop: Shop, make_config: MakeConfig, store: ControlStore, keyring: Keyring
) -> None:
    """A trickle customer has no orders at sign-up; its orders (with their lines) and addresses come
    later, each group in its own transaction, keys from the sequences then, the order dated at its
    writing, after the sign-up; they are tripwired like backdated canaries' (their keys are values of
    the canary, the tables armed, verify clean), and retire removes every row of every table."""
    await add_orders(shop.dsn, shop.owner)
    before = await checksums(shop.dsn, ALL_SHOP_TABLES)
    conn = await asyncpg.connect(shop.dsn)
    try:
        max_order = await conn.fetchval("SELECT max(id) FROM public.orders")
    finally:
        await conn.close()
    registry = Registry(store.pool, keyring)
    cfg = make_config(datastores=[{"name": "shop", "dsn": shop.dsn, "tables": [
        {"table": "public.customers", "count": 8, "mode": "trickle", "trickle_over": "1s"}]}])
    seeder = PostgresSeeder.from_config(cfg, "shop", registry, seed=21)
    await seeder.trickle(schedule=True, now=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc))
    signed = await seeder.trickle(now=FAR)  # the sign-ups: their orders are scheduled, for a later run
    assert signed.signups == {"public.customers": 8} and signed.children == {}
    pks = [int(c.location["pk"]) for c in await registry.active("shop")]
    conn = await asyncpg.connect(shop.dsn)
    try:
        await conn.execute("SET row_security = off")
        assert await conn.fetchval("SELECT count(*) FROM public.orders WHERE customer_id = ANY($1::bigint[])", pks) == 0
        child_slots = await store.pool.fetch("SELECT due_at FROM trickle_slots WHERE kind = 'child' ORDER BY due_at")
        assert child_slots, "real customers have orders: canaries get some later"
        result = await seeder.trickle(now=FAR)
        assert set(result.children) >= {"public.orders"} and not result.failed
        orders = await conn.fetch(
            "SELECT o.id, o.created_at, o.xmin::text AS x, c.created_at AS signup FROM public.orders o"
            " JOIN public.customers c ON c.id = o.customer_id WHERE o.customer_id = ANY($1::bigint[]) ORDER BY o.id", pks)
        items = await conn.fetchval("SELECT count(*) FROM public.order_items i JOIN public.orders o ON o.id = i.order_id"
                                    " WHERE o.customer_id = ANY($1::bigint[])", pks)
        policy_xmin = await conn.fetchval("SELECT xmin::text FROM pg_policy WHERE polrelid = 'public.orders'::regclass"
                                          " AND polname = 'rowsec_r'")
    finally:
        await conn.close()
    assert len(orders) == result.children["public.orders"] and items == result.children.get("public.order_items", 0)
    assert all(o["id"] > max_order for o in orders), "order keys come from the sequence when written"
    assert all(o["created_at"] >= o["signup"] for o in orders)
    assert len({o["x"] for o in orders}) == len(orders), "each order in its own transaction"
    first = min(orders, key=lambda o: int(o["x"]))
    assert policy_xmin == first["x"], "the orders table is armed once; later orders only join its members"
    values = [v for c in await registry.active("shop") for k, v in await registry.values_of(c.id) if k == "child_row"]
    assert sum(1 for v in values if "public.orders" in v) == len(orders)
    report = await seeder.verify()
    assert report.ok, report.findings
    assert (await seeder.trickle(now=FAR)).children == {}
    await seeder.retire()
    assert await checksums(shop.dsn, ALL_SHOP_TABLES) == before


async def test_the_listener_scheduler_writes_due_sign_ups_and_reports_failures(
    target_dsn: str, make_config: MakeConfig, store: ControlStore, keyring: Keyring, open_test_runtime: OpenRuntime
) -> None:
    """The scheduler's ``trickle:<datastore>`` job (seeding.trickle_interval) writes what is due with the
    configured pools; a sign-up that cannot be written (the table is gone) becomes a HEALTH event and
    its slot stays pending for the next run."""
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute(MEMBERS)
    finally:
        await conn.close()
    cfg = make_config(
        coverage={"checks": False}, seeding={"trickle_interval": "0.2s", "email_domains": ["canary-mail.example"]},
        datastores=[{"name": "shop", "dsn": target_dsn, "tables": [
            {"table": "public.members", "count": 2, "mode": "trickle", "trickle_over": "1s"}]}])
    rt = await open_test_runtime(cfg)
    await PostgresSeeder.from_config(cfg, "shop", rt.registry).trickle(schedule=True, now=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc))
    sched = CoverageScheduler()
    assert [n for n, _, _ in sched.jobs.__func__(_with_runtime(sched, rt))] == ["trickle:shop"]  # type: ignore[attr-defined]
    await sched.start(rt)
    try:
        await _wait(lambda: _count(store, "SELECT count(*) >= 2 FROM trickle_slots WHERE kind = 'signup' AND state = 'done'"))
        active = await rt.registry.active("shop")
        assert len(active) == 2
        emails = [v for c in active for k, v in await rt.registry.values_of(c.id) if k == "email"]
        assert emails and all(e.endswith("@canary-mail.example") for e in emails), "the configured pools are used"
        conn = await asyncpg.connect(target_dsn)
        try:
            await conn.execute("ALTER TABLE public.members RENAME TO gone")
        finally:
            await conn.close()
        await store.pool.execute("INSERT INTO trickle_slots (datastore, target, slot, kind, due_at)"
                                 " VALUES ('shop', 'public.members', 99, 'signup', now())")
        rows = await _wait(lambda: store.pool.fetch("SELECT * FROM events WHERE group_key = 'trickle-failed:shop:public.members'"))
    finally:
        await sched.stop()
    assert rows[0]["kind"] == "health" and rows[0]["evidence"]["problem"] == "trickle_failed"
    assert await store.pool.fetchval("SELECT state FROM trickle_slots WHERE slot = 99") == "pending"


def _with_runtime(sched: CoverageScheduler, rt: Any) -> CoverageScheduler:
    sched.runtime = rt
    return sched


async def _count(store: ControlStore, sql: str) -> Any:
    return await store.pool.fetchval(sql)


def test_the_cli_plans_schedules_and_runs_a_trickle(
    target_dsn: str, control_dsn: str, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`canary plan` shows the schedule to come and the traces each sign-up leaves, `canary seed`
    schedules, `canary trickle` writes nothing before its time and says what is to come."""
    asyncio.run(_members(target_dsn))
    write_key_file(data_dir / "master.key", generate_key())
    conf = data_dir / "canary.toml"
    conf.write_text(
        f'[canary]\ndata_dir = "{data_dir}"\nmaster_key_file = "{data_dir / "master.key"}"\n[control]\ndsn = "{control_dsn}"\n'
        f'[[datastores]]\nname = "shop"\ndsn = "{target_dsn}"\n[[datastores.tables]]\ntable = "public.members"\ncount = 4\n'
        'mode = "trickle"\ntrickle_over = "30d"\n')
    base = ["-c", str(conf), "--log-level", "error"]
    assert main([*base, "plan"]) == 0
    out = capsys.readouterr().out
    assert "datastore shop: 0 canaries to add" in out and "arriving over time (trickle): 0 sign-ups" in out
    assert "4 more to schedule over 30 days" in out and "trace: one transaction per canary" in out
    assert main([*base, "seed"]) == 0
    capsys.readouterr()
    assert main([*base, "trickle", "--json"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)
    assert doc["signups"] == {} and doc["pending"] == {"public.members": 4} and doc["next_due"]
    assert main([*base, "trickle"]) == 0
    assert "public.members: 4 to come" in capsys.readouterr().out
    assert main([*base, "status"]) == 0
    assert "trickle shop/public.members: 0 arrived, 4 to come, 0 later updates / rows, next due" in capsys.readouterr().out


async def _members(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(MEMBERS)
    finally:
        await conn.close()


async def test_a_simulated_clock_dates_the_schedule_and_the_rows(
    target_dsn: str, make_config: MakeConfig, store: ControlStore, keyring: Keyring
) -> None:
    """With a clock (benchmarks replaying weeks in seconds), the schedule starts at the clock's time and
    each sign-up is dated by it, not by the server's now()."""
    await _members(target_dsn)
    sim = [dt.datetime(2025, 6, 2, 9, 0, 0, 500_000, tzinfo=dt.timezone.utc)]
    seeder = PostgresSeeder.from_config(_config(make_config, target_dsn, 3, over="1d"), "shop", Registry(store.pool, keyring),
                                        seed=2, clock=lambda: sim[0])
    await seeder.trickle(schedule=True)
    due = [s["due_at"] for s in await _slots(store)]
    assert all(sim[0] <= d < sim[0] + dt.timedelta(days=1) for d in due)
    sim[0] = due[1] + dt.timedelta(milliseconds=250)
    assert (await seeder.trickle()).signups == {"public.members": 2}
    new = (await _rows(target_dsn))[-2:]
    assert all(r["created_at"] == sim[0].replace(microsecond=0) for r in new)


async def test_concurrent_runs_write_each_sign_up_once(
    target_dsn: str, make_config: MakeConfig, store: ControlStore, keyring: Keyring
) -> None:
    """Two listeners (or a listener and `canary trickle`) running the same datastore's trickle at once:
    one does the work, the other returns at once saying so; every sign-up is written exactly once."""
    await _members(target_dsn)
    cfg = _config(make_config, target_dsn, 4, over="1s")
    one, two = (PostgresSeeder.from_config(cfg, "shop", Registry(store.pool, keyring), seed=s) for s in (1, 2))
    await one.trickle(schedule=True, now=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc))
    results = await asyncio.gather(one.trickle(now=FAR), two.trickle(now=FAR))
    assert sorted(sum(r.signups.values()) for r in results) == [0, 4]
    assert any("in progress" in w for r in results for w in r.warnings)
    assert len(await Registry(store.pool, keyring).active("shop")) == 4 and len(await _rows(target_dsn)) == 1204
    assert (await two.trickle(now=FAR)).signups == {}


async def test_a_sign_up_made_ahead_reads_no_more_than_the_newest_rows(
    target_dsn: str, make_config: MakeConfig, store: ControlStore, keyring: Keyring
) -> None:
    """Scheduling makes every sign-up's row (sampling and counting the table then); a sign-up itself
    scans nothing: the table's seq_scan does not move while canaries arrive, its idx_scan does. A row
    made ahead is stored encrypted (its contact points never in clear in the control store)."""
    await _members(target_dsn)
    seeder = PostgresSeeder.from_config(
        make_config(seeding={"email_domains": ["canary-mail.example"]},
                    datastores=[{"name": "shop", "dsn": target_dsn, "tables": [
                        {"table": "public.members", "count": 3, "mode": "trickle", "trickle_over": "1s"}]}]),
        "shop", Registry(store.pool, keyring), seed=4)
    await seeder.trickle(schedule=True, now=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc))
    payloads = await store.pool.fetch("SELECT payload FROM trickle_slots WHERE kind = 'signup'")
    assert len(payloads) == 3 and all(p["payload"] is not None and b"canary-mail" not in p["payload"] for p in payloads)

    async def scans() -> tuple[int, int]:
        conn = await asyncpg.connect(target_dsn)
        try:
            row = await conn.fetchrow("SELECT seq_scan, idx_scan FROM pg_stat_user_tables WHERE relid = 'public.members'::regclass")
            return int(row["seq_scan"]), int(row["idx_scan"] or 0)
        finally:
            await conn.close()

    await asyncio.sleep(1.2)  # the scheduling session's statistics are flushed
    before = await scans()
    assert (await seeder.trickle(now=FAR)).signups == {"public.members": 3}
    await asyncio.sleep(1.2)
    after = await scans()
    assert after[0] == before[0], "a sign-up made ahead scans no table"
    assert after[1] > before[1]
    emails = [v for c in await Registry(store.pool, keyring).active("shop") for k, v in await Registry(store.pool, keyring).values_of(c.id)
              if k == "email"]
    assert len(emails) == 3 and all(e.endswith("@canary-mail.example") for e in emails)


async def test_rows_made_ahead_survive_a_key_rotation(
    target_dsn: str, make_config: MakeConfig, store: ControlStore, keyring: Keyring
) -> None:
    """`canary rotate-key` re-encrypts the sign-ups' rows made ahead: after it, they arrive as made
    (the same contact points), read with the new key; the old key opens none of them."""
    await _members(target_dsn)
    cfg = make_config(seeding={"email_domains": ["canary-mail.example"]}, datastores=[{"name": "shop", "dsn": target_dsn, "tables": [
        {"table": "public.members", "count": 2, "mode": "trickle", "trickle_over": "1s"}]}])
    old = Registry(store.pool, keyring)
    await PostgresSeeder.from_config(cfg, "shop", old, seed=4).trickle(schedule=True, now=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc))
    made = {json.loads(keyring.decrypt_text(bytes(r["payload"]), trickle.PAYLOAD))["email"]
            for r in await store.pool.fetch("SELECT payload FROM trickle_slots")}
    new_key = Keyring(generate_key())
    summary = await rotate(cfg, old, new_key)
    assert summary["counts"]["trickle_slots"] == 2
    blobs = [bytes(r["payload"]) for r in await store.pool.fetch("SELECT payload FROM trickle_slots")]
    with pytest.raises(CryptoError):
        keyring.decrypt_text(blobs[0], trickle.PAYLOAD)
    new = Registry(store.pool, new_key)
    assert (await PostgresSeeder.from_config(cfg, "shop", new).trickle(now=FAR)).signups == {"public.members": 2}
    used = {v for c in await new.active("shop") for k, v in await new.values_of(c.id) if k == "email"}
    assert used == made


async def test_a_reader_holding_the_table_delays_a_sign_up_but_keeps_its_row(
    target_dsn: str, make_config: MakeConfig, store: ControlStore, keyring: Keyring
) -> None:
    """A role that only SELECTs can hold the table (a long query) while the first sign-up needs to arm
    it: the run fails on its lock timeout, says why, and keeps the row made ahead (no run samples the
    table again); once the query ends the next run writes that very row."""
    await _members(target_dsn)
    cfg = make_config(seeding={"lock_timeout": "0.5s", "email_domains": ["canary-mail.example"]},
                      datastores=[{"name": "shop", "dsn": target_dsn, "tables": [
                          {"table": "public.members", "count": 1, "mode": "trickle", "trickle_over": "1s"}]}])
    registry = Registry(store.pool, keyring)
    seeder = PostgresSeeder.from_config(cfg, "shop", registry, seed=4)
    await seeder.trickle(schedule=True, now=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc))
    blob = bytes(await store.pool.fetchval("SELECT payload FROM trickle_slots"))
    made = json.loads(keyring.decrypt_text(blob, trickle.PAYLOAD))["email"]
    reader = await asyncpg.connect(target_dsn)
    try:
        await reader.execute("BEGIN; SELECT count(*) FROM public.members")  # ACCESS SHARE until the end
        held = await seeder.trickle(now=FAR)
        await reader.execute("ROLLBACK")
    finally:
        await reader.close()
    assert held.signups == {} and "locked by another session" in held.failed["public.members"]
    assert bytes(await store.pool.fetchval("SELECT payload FROM trickle_slots")) == blob
    assert (await seeder.trickle(now=FAR)).signups == {"public.members": 1}
    assert [v for c in await registry.active("shop") for k, v in await registry.values_of(c.id) if k == "email"] == [made]


def test_arrivals_follow_the_hours_customers_sign_up_at() -> None:
    """Sign-ups drawn against a table whose customers sign up 09:00-18:00 UTC on weekdays land there
    far more often than a uniform draw would (5/14 of the week's hours); an empty profile is uniform."""
    rng = random.Random(4)
    monday = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    epochs = [(monday + dt.timedelta(days=d % 5 + 7 * (d // 5), hours=9 + rng.random() * 9)).timestamp() for d in range(2000)]
    times = trickle.arrival_times(rng, monday, 14 * 86400, 400, epochs)
    assert len(times) == 400 and times == sorted(times)
    assert all(monday <= t < monday + dt.timedelta(days=14) for t in times)
    office = sum(1 for t in times if t.weekday() < 5 and 9 <= t.hour < 18) / len(times)
    assert office > 0.8
    flat = trickle.arrival_times(random.Random(4), monday, 14 * 86400, 400, [])
    assert 0.15 < sum(1 for t in flat if t.weekday() < 5 and 9 <= t.hour < 18) / len(flat) < 0.45


def test_update_habit_is_learnt_from_the_real_gaps() -> None:
    h = trickle.UpdateHabit.of([0.0] * 30 + [3600.0 * i for i in range(1, 71)], nulls=0)
    assert abs(h.share - 0.7) < 1e-9 and not h.initial_null
    rng = random.Random(1)
    delays = [h.delay(rng) for _ in range(2000)]
    drawn = [d for d in delays if d is not None]
    assert 0.65 < len(drawn) / len(delays) < 0.75 and all(3600.0 <= d <= 70 * 3600.0 for d in drawn)
    assert trickle.UpdateHabit.of([5.0] * 3, nulls=10).initial_null
    assert trickle.UpdateHabit.of([], nulls=0).delay(rng) is None
