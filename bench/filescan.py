"""Export scanner throughput and memory on a large CSV export (default 1 GiB).

Writes a customers CSV with a few canary e-mails / phones at random places, then measures, side by
side: a plain read of the file (the I/O floor), the Aho-Corasick scan with 1,000 canary values, and
peak RSS before and after the scan (flat memory: the scan must not grow with the file).

    python -m bench.filescan [--size-mb 1024] [--canaries 1000] [--path /tmp/canary-bench.csv] [--keep]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import time
from pathlib import Path

from canary.health.filescan import CHUNK, compile_patterns, file_chunks, scan_file


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_export(path: Path, size: int, planted: list[str], rng: random.Random) -> int:
    """Realistic rows until ``size`` bytes; the planted values go at random row positions."""
    cities = ["Springfield", "Riverside", "Franklin", "Greenville", "Bristol", "Fairview", "Salem"]
    approx_rows = size // 80
    spots = {rng.randrange(1, approx_rows): v for v in planted}
    written = 0
    i = 0
    with path.open("wb", buffering=8 * 1024 * 1024) as fh:
        fh.write(b"id,full_name,email,phone,city,balance,created_at\n")
        batch: list[str] = []
        while written < size:
            i += 1
            email = spots.get(i) or f"user{i}.{rng.randrange(10**6)}@example.net"
            batch.append(f"{i},Customer {i},{email},555-{i % 10000:04d},{cities[i % 7]},{i % 5000}.25,2024-03-{1 + i % 28:02d}\n")
            if len(batch) == 10_000:
                data = "".join(batch).encode()
                fh.write(data)
                written += len(data)
                batch = []
    return i


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--canaries", type=int, default=1000)
    ap.add_argument("--path", default="/tmp/canary-bench-export.csv")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    rng = random.Random(7)
    path = Path(args.path)
    values = [(i, "email", f"canary.{i}.{rng.randrange(10**9)}@mail-canary.example") for i in range(args.canaries)]
    values += [(args.canaries + i, "phone", f"+1 555 01{rng.randrange(10**5):05d}") for i in range(args.canaries // 10)]
    planted = [values[j][2].upper() for j in rng.sample(range(args.canaries), 5)]
    if not path.exists() or path.stat().st_size < args.size_mb * 1024 * 1024:
        t = time.perf_counter()
        rows = write_export(path, args.size_mb * 1024 * 1024, planted, rng)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.0f} MB, {rows:,} rows) in {time.perf_counter() - t:.1f}s")
    size = path.stat().st_size
    t = time.perf_counter()
    patterns = compile_patterns(values)
    print(f"automaton: {len(patterns.owners):,} patterns in {time.perf_counter() - t:.2f}s; chunk {CHUNK // 1024 // 1024} MiB")
    rss_before, peak_before = rss_mb(), peak_mb()

    t = time.perf_counter()
    n = sum(len(c) for c in file_chunks(path))
    read_s = time.perf_counter() - t
    t = time.perf_counter()
    result = scan_file(path, patterns)
    scan_s = time.perf_counter() - t
    assert n == size == result.bytes

    mb = size / 1e6
    print(f"{'':24}{'seconds':>10}{'MB/s':>10}")
    print(f"{'plain read (floor)':24}{read_s:>10.2f}{mb / read_s:>10.0f}")
    print(f"{'canary scan':24}{scan_s:>10.2f}{mb / scan_s:>10.0f}")
    print(f"scan / read time ratio: {scan_s / read_s:.2f}x")
    print(f"canaries found: {len(result.hits)} (planted {len(planted)}), matches {result.matches}")
    print(f"RSS before scan {rss_before:.0f} MB, after {rss_mb():.0f} MB; peak RSS before {peak_before:.0f} MB, "
          f"after {peak_mb():.0f} MB (file {mb:.0f} MB)")
    if not args.keep:
        os.unlink(path)


if __name__ == "__main__":
    main()
