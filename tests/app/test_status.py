"""`canary status`: canary inventory per datastore and table (counts by label and kind, never values),
detection health (last event per source, checkpoint age, outbox backlog and dead letters, detection
objects), the last drill run, and drill-tagged incidents that match no registered drill run."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from testkit import MakeConfig

from canary.app.cli import main
from canary.app.commands.status import gather, render_text
from canary.crypto import Keyring
from canary.drilltags import register_markers, register_run
from canary.events import DetectionEvent, EventKind, event_key
from canary.pipeline import Pipeline
from canary.store import ControlStore
from canary.store.registry import NewCanary, Registry, location_key


async def _populate(store: ControlStore, keyring: Keyring, make_config: MakeConfig) -> list[int]:
    registry = Registry(store.pool, keyring)
    canaries = [
        NewCanary("customer", "shop", "shop/public.customers", {"target": "public.customers", "pk": i},
                  location_key("shop", "public.customers", i), values=(("email", f"jane.{i}@mx.example"),))
        for i in range(3)
    ] + [NewCanary("credential", "shop", "shop/config/app.env", {"target": "config/app.env", "pk": "c1"},
                   location_key("shop", "config/app.env", "c1"), values=(("token", "sk_live_SECRETVALUE123"),))]
    async with store.pool.acquire() as conn:
        ids = [i for i, _ in await registry.add(conn, canaries, None)]
        await conn.execute("INSERT INTO detection_objects (datastore, target, details) VALUES ('shop', 'public.customers', '{}')")
        await conn.execute("INSERT INTO checkpoints (source, position, updated_at) VALUES"
                           " ('jsonlog:shop-primary', '{}', now() - interval '90 seconds')")
    await register_run(store.pool, "dr-0123456789ab", "credentials", "configured", 2)
    await register_markers(store.pool, "dr-0123456789ab", 1, [("drill", "drill", "dr-0123456789ab/1")], 60)
    now = dt.datetime.now(dt.timezone.utc)
    cfg = make_config(sinks=[{"name": "oncall", "type": "stdout"}])
    events = [
        DetectionEvent(kind=EventKind.READ, source="jsonlog:shop-primary", key=event_key("s", 1), group="g-real",
                       canary_id=ids[0], observed_at=now, actor={"user": "mallory"}),
        DetectionEvent(kind=EventKind.READ, source="jsonlog:shop-primary", key=event_key("s", 2), group="g-spoof",
                       canary_id=ids[1], observed_at=now, actor={"user": "mallory"}, drill="made-up-by-attacker"),
        DetectionEvent(kind=EventKind.USED, source="token_honeypot", key=event_key("s", 3), group="g-drill",
                       canary_id=ids[3], observed_at=now, drill="dr-0123456789ab/1"),
    ]
    await Pipeline(store.pool, cfg).record(events)
    await store.pool.execute("UPDATE outbox SET status = 'dead' WHERE id = (SELECT min(id) FROM outbox)")
    await store.pool.execute(
        "UPDATE drill_runs SET status = 'failed', finished_at = clock_timestamp(), detected = 1, missed = 1, result = $1"
        " WHERE id = 'dr-0123456789ab'",
        {"steps": [{"name": "canary API token used", "status": "passed", "time_to_detect_s": 0.01, "time_to_page_s": 0.02},
                   {"name": "canary DSN used", "status": "missed", "time_to_detect_s": None, "time_to_page_s": None}]},
    )
    return ids


async def test_status_reports_inventory_health_and_last_drill(store: ControlStore, keyring: Keyring, make_config: MakeConfig) -> None:
    """Counts per datastore/label/kind, per-source last events, checkpoint age, outbox pending and dead,
    the detection objects and the last drill; a claimed drill tag with no registered run is flagged; no
    canary value or location appears anywhere in the output."""
    await _populate(store, keyring, make_config)
    doc = await gather(store.pool)
    inv = {(r["label"], r["kind"]): r["count"] for r in doc["inventory"]}
    assert inv == {("shop/public.customers", "customer"): 3, ("shop/config/app.env", "credential"): 1}
    sources = {r["source"]: r for r in doc["detection"]["sources"]}
    assert sources["jsonlog:shop-primary"]["events"] == 2 and sources["token_honeypot"]["events"] == 1
    assert sources["token_honeypot"]["last_event_age_s"] < 60
    [cp] = doc["detection"]["checkpoints"]
    assert 85 <= cp["age_s"] < 300
    assert doc["detection"]["detection_objects"][0]["target"] == "public.customers"
    assert (doc["outbox"]["pending"], doc["outbox"]["dead"]) == (2, 1)
    assert doc["incidents"]["open"] == 3 and doc["incidents"]["open_not_drill"] == 2  # the spoofed tag is not a drill
    d = doc["last_drill"]
    assert (d["run_id"], d["status"], d["detected"], d["missed"]) == ("dr-0123456789ab", "failed", 1, 1)
    assert [s["status"] for s in d["step_results"]] == ["passed", "missed"]
    assert [r["drill"] for r in doc["unregistered_drill_tags"]] == ["made-up-by-attacker"]
    text = render_text(doc)
    assert "shop/public.customers" in text and "FAILED" in text and "1 dead" in text
    assert "WARNING: 1 incident(s) carry a drill tag that matches no registered drill run" in text
    blob = json.dumps(doc) + text
    assert "jane." not in blob and "SECRETVALUE" not in blob and '"pk"' not in blob


async def test_status_on_an_empty_store(store: ControlStore) -> None:
    """A fresh control store reports nothing deployed, no events and no drill, without errors."""
    doc = await gather(store.pool)
    assert doc["inventory"] == [] and doc["last_drill"] is None and doc["unregistered_drill_tags"] == []
    text = render_text(doc)
    assert "none deployed" in text and "Last drill: none recorded" in text and "no events recorded yet" in text


def test_status_command_prints_json(control_dsn: str, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`canary -c <file> status --json` reads the configured control store and prints the document."""
    conf = data_dir / "canary.toml"
    conf.write_text(f'[canary]\ndata_dir = "{data_dir}"\nlog_format = "console"\n[control]\ndsn = "{control_dsn}"\n')
    assert main(["-c", str(conf), "--log-level", "error", "status", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["inventory"] == [] and doc["outbox"] == {"pending": 0, "dead": 0, "oldest_pending_age_s": None}


async def test_status_shows_a_log_tail_behind_its_input(store: ControlStore, tmp_path: Path) -> None:
    """A jsonlog position that has not moved for two minutes while its file (and a newer one) grew is
    reported with the bytes it is behind, and as stalled."""
    old, new = tmp_path / "postgresql-20261123-100000.json", tmp_path / "postgresql-20261123-110000.json"
    old.write_bytes(b"x" * 1000)
    new.write_bytes(b"y" * 500)
    position = {"path": str(old), "inode": old.stat().st_ino, "offset": 400}
    await store.pool.execute("INSERT INTO checkpoints (source, position, updated_at) VALUES ($1, $2, now() - interval '120 seconds')",
                             "jsonlog:replica", position)
    await store.pool.execute("INSERT INTO checkpoints (source, position, updated_at) VALUES ($1, $2, now() - interval '120 seconds')",
                             "jsonlog:idle", {"path": str(new), "inode": new.stat().st_ino, "offset": 500})
    doc = await gather(store.pool, stall_after=60)
    cps = {c["source"]: c for c in doc["detection"]["checkpoints"]}
    assert (cps["jsonlog:replica"]["behind_bytes"], cps["jsonlog:replica"]["stalled"]) == (1100, True)
    assert (cps["jsonlog:idle"]["behind_bytes"], cps["jsonlog:idle"]["stalled"]) == (0, False)
    text = render_text(doc)
    assert "1,100 bytes behind  STALLED" in text
