"""Drill figures on this machine.

1. Time-to-detect and time-to-page per step of the ``breach`` playbook (every attack path), over
   ``--runs`` runs, each against a fresh demo deployment: p50 and max per step, next to the step's SLO.
2. The pipeline cost of drill attribution (``canary.drills.tagging.attribute_drills``, one query per
   batch): its time per batch next to the whole ``Pipeline.record`` of the same batch, with no drill
   running and with a drill's markers registered.

    python bench/drill_latency.py [--runs 5] [--batches 40] [--batch 200]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import time
from collections import defaultdict

from canary import logs
from canary.drills import deployment, playbook
from canary.drills.runner import DrillRunner
from canary.drilltags import attribute_drills, register_markers, register_run
from canary.events import DetectionEvent, EventKind, event_key
from canary.pipeline import Pipeline


def _ms(v: float) -> str:
    return f"{v * 1000:7.1f} ms"


async def drills(runs: int) -> None:
    book = playbook.load("breach")
    detect: dict[str, list[float]] = defaultdict(list)
    page: dict[str, list[float]] = defaultdict(list)
    status: dict[str, set[str]] = defaultdict(set)
    setups = []
    for run in range(runs):  # a fresh deployment each run: no incident grouping across runs
        t = time.perf_counter()
        async with deployment.demo(book, customers=20_000) as target:
            setups.append(time.perf_counter() - t)
            result = await DrillRunner(target, book).run()
            for s in result.steps:
                status[s.name].add(str(s.status))
                if s.detect_s is not None:
                    detect[s.name].append(s.detect_s)
                if s.page_s is not None:
                    page[s.name].append(s.page_s)
            if run == 0:
                for note in target.notes:
                    print(f"  {note}")
    print(f"demo deployment for '{book.name}' up in {statistics.median(setups):.1f}s (median); {runs} run(s)")
    print(f"\n{'step':<36} {'status':<10} {'detect p50':>11} {'max':>11} {'page p50':>11} {'max':>11} {'SLO d/p':>10}")
    for s in book.steps:
        slo = book.slo_for(s)
        d, p = detect.get(s.name, []), page.get(s.name, [])
        cells = [(_ms(statistics.median(x)), _ms(max(x))) if x else ("—", "—") for x in (d, p)]
        print(f"{s.name[:36]:<36} {','.join(sorted(status[s.name])):<10} {cells[0][0]:>11} {cells[0][1]:>11} "
              f"{cells[1][0]:>11} {cells[1][1]:>11} {slo.detect:>4g}/{slo.page:<4g}s")


def _events(n: int, batch: int) -> list[DetectionEvent]:
    now = dt.datetime.now(dt.UTC)
    return [DetectionEvent(kind=EventKind.CONTACTED, source="bench", key=event_key("b", n, i), group=f"g{n}-{i % 10}",
                           canary_id=None, observed_at=now, actor={"sender": f"s{i}@x.example"}) for i in range(batch)]


async def attribution(batches: int, batch: int) -> None:
    import shutil
    import tempfile
    from pathlib import Path

    from canary.config import from_mapping
    from canary.store import ControlStore
    from canary.store.embedded import PostgresServer

    tmp = Path(tempfile.mkdtemp(prefix="canary-bench-"))
    server = PostgresServer(tmp / "pg")
    await asyncio.to_thread(server.start)
    try:
        cfg = from_mapping({"canary": {"data_dir": str(tmp)}, "control": {"dsn": server.dsn()},
                            "sinks": [{"name": "out", "type": "stdout"}]})
        store = ControlStore(cfg)
        await store.open()
        pipeline = Pipeline(store.pool, cfg)
        print(f"\npipeline drill attribution, {batches} batches of {batch} events")
        print(f"{'':<28} {'attribute_drills':>17} {'Pipeline.record':>16} {'share':>7}")
        for label in ("no drill running", "a drill's markers active"):
            if label.startswith("a drill"):
                await register_run(store.pool, "dr-bench000000", "bench", "configured", 4)
                for step in range(1, 5):
                    await register_markers(store.pool, "dr-bench000000", step,
                                           [("actor", "sender", f"drill-{step}@billing-notice.example"),
                                            ("evidence", "provider_id", f"SM{step:032d}")], 600)
            tag_t, rec_t = [], []
            for n in range(batches):
                evs = _events(n + (0 if label.startswith("no") else batches), batch)
                async with store.pool.acquire() as conn:
                    t = time.perf_counter()
                    await attribute_drills(conn, evs)
                    tag_t.append(time.perf_counter() - t)
                t = time.perf_counter()
                await pipeline.record(evs)
                rec_t.append(time.perf_counter() - t)
            a, r = statistics.median(tag_t), statistics.median(rec_t)
            print(f"{label:<28} {_ms(a):>17} {_ms(r):>16} {a / r:>6.1%}")
        await store.close()
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(tmp, ignore_errors=True)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--batch", type=int, default=200)
    args = ap.parse_args()
    logs.configure("error", "console")
    await drills(args.runs)
    await attribution(args.batches, args.batch)


if __name__ == "__main__":
    asyncio.run(main())
