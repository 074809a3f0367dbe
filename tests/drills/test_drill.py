"""Drills end to end: the insider-export playbook passes against the demo deployment through the real
pipeline (jsonlog -> incident -> outbox -> signed webhook), a drill whose detection was disabled
reports the steps as missed and fails, and playbooks are validated with key paths."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest
from seeder_helpers import shop_database
from testkit import MakeConfig

from canary.app.cli import main
from canary.app.commands.drill import exit_code
from canary.crypto import Keyring, generate_key, load_key, write_key_file
from canary.drills import deployment, playbook
from canary.drills.runner import DrillRunner, StepStatus
from canary.errors import DrillError
from canary.listener import Listener
from canary.runtime import open_runtime
from canary.seeding.postgres import PostgresSeeder
from canary.store.embedded import PostgresServer


def _book(tmp: Path, text: str, name: str = "custom") -> playbook.Playbook:
    path = tmp / f"{name}.toml"
    path.write_text(text)
    return playbook.load(str(path))


def test_insider_export_passes_against_the_demo_deployment(tmp_path: Path) -> None:
    """`canary drill run insider-export` stands up the demo deployment, detects and pages both steps
    within the SLOs, exits 0 and writes Markdown, HTML and JSON reports with incident ids and evidence."""
    rc = main(["drill", "run", "insider-export", "--report-dir", str(tmp_path), "--customers", "6000"])
    assert rc == 0
    [json_path] = tmp_path.glob("drill-insider-export-*.json")
    data = json.loads(json_path.read_text())
    assert data["status"] == "passed" and data["mode"] == "demo"
    assert [s["status"] for s in data["steps"]] == ["passed", "passed"]
    for step, kind in zip(data["steps"], ["read", "exported"]):
        assert step["detected"] and step["incident_ids"]
        assert 0 < step["time_to_detect_s"] <= step["slo"]["detect_s"]
        assert step["time_to_detect_s"] <= step["time_to_page_s"] <= step["slo"]["page_s"]
        assert step["paged_sinks"] == ["oncall"]
        inc = step["incidents"][0]
        assert inc["kind"] == kind and inc["canaries"] > 0 and inc["title"].startswith("[DRILL] ")
        assert inc["actor"]["user"] == deployment.INSIDER_ROLE
        assert inc["drill"] == f"{data['run_id']}/{step['number']}"
        assert inc["evidence"]["table"] == "public.customers"
    assert data["steps"][0]["facts"]["statements"] > 1  # read in pages over time
    assert data["steps"][1]["incidents"][0]["evidence"]["query"].startswith("COPY")
    md = next(tmp_path.glob("*.md")).read_text()
    assert "PASSED" in md and f"#{data['steps'][1]['incident_ids'][0]}" in md
    assert next(tmp_path.glob("*.html")).read_text().count('class="step"') == 2


async def test_dropped_policy_is_missed_and_fails(tmp_path: Path) -> None:
    """With the detection policy dropped before the reads, every step is reported missed (no incident
    carries the step's drill tag), the run is recorded as failed and the exit code is non-zero."""
    book = _book(tmp_path, """
name = "insider-no-detection"
[slo]
detect = "2s"
page = "4s"
[[steps]]
name = "bulk read"
action = "pg_read"
expect = "read"
timeout = "2s"
[[steps]]
name = "COPY export"
action = "pg_copy"
expect = "exported"
timeout = "2s"
""")
    async with deployment.demo(book, customers=2000, canaries=5) as target:
        assert target.datastore is not None
        conn = await asyncpg.connect(target.datastore.dsn.reveal())
        try:
            restrictive = f"{target.datastore.detection_schema}_r"
            await conn.execute(f'DROP POLICY "{restrictive}" ON public.customers')
        finally:
            await conn.close()
        result = await DrillRunner(target, book).run()
        stored = await target.pool.fetchrow("SELECT status, missed, detected, result FROM drill_runs WHERE id = $1", result.run_id)
        incidents = await target.pool.fetchval("SELECT count(*) FROM incidents")
    assert [s.status for s in result.steps] == [StepStatus.MISSED, StepStatus.MISSED]
    assert all(s.facts["rows"] > 0 and not s.incidents for s in result.steps)
    assert "no read event" in result.steps[0].reason
    assert incidents == 0
    assert (stored["status"], stored["missed"], stored["detected"]) == ("failed", 2, 0)
    assert stored["result"]["steps"][0]["status"] == "missed"
    assert exit_code(result) == 1


async def test_missing_prerequisites_are_skipped_never_passed(make_config: MakeConfig, data_dir: Path) -> None:
    """Against a configured deployment without honeypots, canary credentials or an insider DSN, the
    steps are skipped with the reason; skipped steps do not fail a run unless --strict."""
    write_key_file(data_dir / "master.key", generate_key())
    cfg = make_config()
    book = playbook.parse_playbook({"name": "prereq", "steps": [
        {"name": "token", "action": "token", "expect": "used"},
        {"name": "dsn", "action": "dsn", "expect": "used"},
        {"name": "mail", "action": "mail", "expect": "contacted"},
        {"name": "sms", "action": "sms", "expect": "contacted"},
        {"name": "read", "action": "pg_read", "expect": "read"},
        {"name": "replica", "action": "replica_read", "expect": "read"},
    ]}, "test")
    async with deployment.configured(cfg) as target:
        result = await DrillRunner(target, book).run()
        runs = await target.pool.fetchval("SELECT count(*) FROM drill_runs WHERE status = 'passed' AND skipped = 6")
    reasons = [s.reason for s in result.steps]
    assert [s.status for s in result.steps] == [StepStatus.SKIPPED] * 6
    assert "[honeypot.http]" in reasons[0] and "[honeypot.postgres]" in reasons[1]
    assert "smtp" in reasons[2] and "twilio_auth_token" in reasons[3]
    assert "insider DSN" in reasons[4] and "standby" in reasons[5]
    assert runs == 1
    assert exit_code(result) == 0 and exit_code(result, strict=True) == 1


@pytest.mark.parametrize(("text", "message"), [
    ('name = "x"\n[[steps]]\nname = "a"\naction = "teleport"\nexpect = "read"\n', "steps[0].action"),
    ('name = "x"\n[[steps]]\nname = "a"\naction = "pg_read"\nexpect = "read"\ncolour = "red"\n', "steps[0].colour: unknown key"),
    ('name = "x"\n[[steps]]\nname = "a"\naction = "pg_read"\nexpect = "read"\n'
     '[[steps]]\nname = "a"\naction = "pg_copy"\nexpect = "exported"\n', "duplicate step names: a"),
    ('name = "x"\n[slo]\ndetect = "soon"\n[[steps]]\nname = "a"\naction = "pg_read"\nexpect = "read"\n', "slo.detect"),
    ('name = "x"\n[[steps]]\nname = "a"\naction = "pg_read"\nexpect = "read"\ntable = "customers; drop"\n', "steps[0].table"),
    ('name = "x"\nsteps = []\n', "steps"),
    ('name = "x"\n[[steps]\n', "not valid TOML"),
])
def test_invalid_playbooks_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    """A malformed playbook is a DrillError naming the offending key path, not a traceback."""
    with pytest.raises(DrillError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _book(tmp_path, text)


def test_shipped_playbooks_load_and_cover_the_issue() -> None:
    """Every shipped playbook is valid, and together they cover the insider export, a privileged dump,
    a replica read, phishing mail, SMS, a canary API token and a canary DSN."""
    found = playbook.available()
    books = [playbook.load(name) for name in found]
    actions = {str(s.action) for b in books for s in b.steps}
    assert {"insider-export", "privileged-dump", "replica-read", "phishing-mail", "sms", "credentials"} <= set(found)
    assert {"pg_read_pages", "pg_copy", "pg_dump", "replica_read", "mail", "sms", "token", "dsn"} <= actions
    with pytest.raises(DrillError, match="no playbook named 'nope'"):
        playbook.load("nope")


def test_unknown_report_format_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    """`--format pdf` fails before anything runs, with a message listing the formats."""
    assert main(["drill", "run", "insider-export", "--format", "md,pdf"]) == 2
    assert "unknown format(s) pdf" in capsys.readouterr().err


async def test_insider_export_against_a_configured_deployment(
    pg_server: PostgresServer, target_dsn: str, make_config: MakeConfig, data_dir: Path
) -> None:
    """Against a configured deployment whose listener runs separately (here: in-process, like
    `canary listen`), with an ordinary role's DSN as the insider, both steps are detected and paged."""
    write_key_file(data_dir / "master.key", generate_key())
    async with shop_database(pg_server, target_dsn, rows=3000) as shop:
        cfg = make_config(
            datastores=[{"name": "shop", "dsn": shop.dsn, "node": "cfg-primary", "jsonlog_dir": str(pg_server.log_dir),
                         "tables": [{"table": "public.customers", "count": 8}]}],
            listener={"jsonlog_poll": "50ms"}, alerting={"retry_initial": "200ms"},
            sinks=[{"name": "oncall", "type": "stdout"}],
        )
        runtime = await open_runtime(cfg, keyring=Keyring(load_key(cfg.canary.key_file)))
        seeder = PostgresSeeder.from_config(cfg, "shop", runtime.registry)
        await seeder.apply()
        listener = Listener(runtime)
        await listener.start()
        try:
            async with deployment.configured(cfg, insider_dsn=shop.reader_dsn) as target:
                result = await DrillRunner(target, playbook.load("insider-export")).run()
        finally:
            await seeder.retire(force=True)
            await listener.stop()
    assert result.mode == "configured" and result.passed
    for step in result.steps:
        assert step.status is StepStatus.PASSED and step.paged_sinks == ["oncall"]
        assert step.incidents[0]["actor"]["user"] == shop.reader
        assert step.incidents[0]["origin"]["node"] == "cfg-primary"
