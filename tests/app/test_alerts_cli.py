"""``canary alerts`` list / ack / resolve / dead / replay against a real control store, with the
resulting notifications delivered to a local PagerDuty-compatible server."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import structlog
from alerting_servers import PagerDutyServer, drained

from canary.app import cli
from canary.config import load
from canary.events import DetectionEvent, EventKind, event_key
from canary.outbox import Dispatcher
from canary.pipeline import Pipeline
from canary.runtime import build_sinks
from canary.store import ControlStore

KEY = "R0UT1NGK3Y000000000000000000000C"
T0 = dt.datetime(2026, 3, 1, 3, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """The CLI configures structlog to write to this test's captured stderr; undo that afterwards."""
    yield
    structlog.reset_defaults()


def _write_config(path: Path, data_dir: Path, dsn: str, url: str) -> Path:
    path.write_text(f'''
[canary]
data_dir = "{data_dir}"
log_level = "warning"
[control]
dsn = "{dsn}"
[alerting]
retry_initial = 0.05
retry_max = 0.2
sink_timeout = 2
[[alerting.rules]]
name = "nightly-backup"
roles = ["backup"]
[[sinks]]
name = "pd"
type = "pagerduty"
routing_key = "{KEY}"
url = "{url}"
''')
    return path


async def _canary(argv: list[str]) -> int:
    return await asyncio.to_thread(cli.main, argv)


def _ev(i: int, user: str) -> DetectionEvent:
    return DetectionEvent(kind=EventKind.READ, source="cli", key=event_key("cli", i), group=f"cli-{i}", canary_id=None,
                          observed_at=T0, actor={"user": user}, origin={"client_addr": "10.0.0.9"})


async def _deliver(store: ControlStore, cfg_path: Path, http: aiohttp.ClientSession) -> None:
    cfg = load(cfg_path)
    d = Dispatcher(store.pool, build_sinks(cfg, http), cfg.alerting, poll=0.05)
    await d.start()
    try:
        await drained(store.pool, 10)
    finally:
        await d.stop()


async def test_list_ack_resolve_round_trip(store: ControlStore, tmp_path: Path, data_dir: Path, control_dsn: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """list hides suppressed incidents unless --all; resolve closes the PagerDuty alert (a resolve
    event with the incident's dedup key); ack after resolve is refused with exit code 2."""
    async with PagerDutyServer(KEY) as pd, aiohttp.ClientSession() as http:
        cfg_path = _write_config(tmp_path / "canary.toml", data_dir, control_dsn, pd.url)
        await Pipeline(store.pool, load(cfg_path)).record([_ev(1, "mallory"), _ev(2, "backup")])
        await _deliver(store, cfg_path, http)
        paged = await store.pool.fetchrow("SELECT id, dedup_key FROM incidents WHERE suppressed_by IS NULL")
        capsys.readouterr()

        assert await _canary(["-c", str(cfg_path), "alerts", "list", "--json"]) == 0
        listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [r["id"] for r in listed] == [paged["id"]] and listed[0]["delivered"] == 1

        assert await _canary(["-c", str(cfg_path), "alerts", "list", "--all"]) == 0
        out = capsys.readouterr().out
        assert "[suppressed by nightly-backup]" in out and "Canary data read by mallory" in out

        assert await _canary(["-c", str(cfg_path), "alerts", "resolve", str(paged["id"]), "--by", "alice",
                              "--note", "pentest"]) == 0
        assert "1 notification(s) enqueued" in capsys.readouterr().out
        await _deliver(store, cfg_path, http)
        assert pd.alerts[paged["dedup_key"]]["status"] == "resolved"
        assert pd.requests[-1].json() == {"routing_key": KEY, "event_action": "resolve", "dedup_key": paged["dedup_key"]}
        inc = await store.pool.fetchrow("SELECT status, resolved_by, note FROM incidents WHERE id = $1", paged["id"])
        assert tuple(inc) == ("resolved", "alice", "pentest")

        assert await _canary(["-c", str(cfg_path), "alerts", "resolve", str(paged["id"])]) == 0  # idempotent
        assert "0 notification(s)" in capsys.readouterr().out
        assert await _canary(["-c", str(cfg_path), "alerts", "ack", str(paged["id"])]) == 2
        assert "already resolved" in capsys.readouterr().err
        assert await _canary(["-c", str(cfg_path), "alerts", "ack", "999999"]) == 2
        assert "no incident 999999" in capsys.readouterr().err


async def test_dead_letters_are_listed_and_replayed(store: ControlStore, tmp_path: Path, data_dir: Path,
                                                    control_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A notification PagerDuty refused (400) is listed by `alerts dead`; `alerts replay ID` sends it
    again once PagerDuty accepts, and replaying a non-dead id is an error."""
    async with PagerDutyServer(KEY) as pd, aiohttp.ClientSession() as http:
        cfg_path = _write_config(tmp_path / "canary.toml", data_dir, control_dsn, pd.url)
        await Pipeline(store.pool, load(cfg_path)).record([_ev(3, "mallory")])
        pd.script.append((400, {}))
        await _deliver(store, cfg_path, http)
        dead_id = await store.pool.fetchval("SELECT id FROM outbox WHERE status = 'dead'")
        capsys.readouterr()
        assert await _canary(["-c", str(cfg_path), "alerts", "dead"]) == 0
        assert f"{dead_id:>6}  incident" in capsys.readouterr().out
        assert await _canary(["-c", str(cfg_path), "alerts", "replay", str(dead_id)]) == 0
        assert f"replayed 1 dead letter(s): {dead_id}" in capsys.readouterr().out
        started = time.monotonic()
        await _deliver(store, cfg_path, http)
        assert time.monotonic() - started < 5
        assert await store.pool.fetchval("SELECT status FROM outbox WHERE id = $1", dead_id) == "delivered"
        assert len(pd.opened) == 1
        assert await _canary(["-c", str(cfg_path), "alerts", "replay", str(dead_id)]) == 2
        assert "not dead letters" in capsys.readouterr().err
