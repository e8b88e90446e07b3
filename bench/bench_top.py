"""``top --once`` on a big database: 100,000 cases and 50 GPUs in SQLite.

Bulk-inserts the rows (plain INSERTs in one transaction: building them through the
store would take minutes and measure the wrong thing), then times:

* refresh: one :func:`take_snapshot` plus its rendering (plain and Rich at 80x24), in
  process: what every refresh of the live view costs; median of ``--runs``;
* ``top --once``: the whole command as a process (interpreter start, imports, config,
  schema check, snapshot, print); median of 5;

and prints SQLite's plan of each snapshot query, so an unindexed scan shows.
Target (issue 11): under 200 ms. Run: ``python bench/bench_top.py [--cases 100000]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml
from rich.console import Console
from sqlalchemy import event

from mqi_communicator.cli.top import plain_snapshot
from mqi_communicator.console import take_snapshot
from mqi_communicator.console.render import render_screen
from mqi_communicator.migrations import api
from mqi_communicator.persistence import Store, make_engine

GPUS = 50
TERMINAL = ("completed", "completed", "completed", "failed", "cancelled")


def fill(url: str, cases: int) -> None:
    engine = make_engine(url)
    t0 = datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None)
    live = {i: "running" for i in range(cases - GPUS, cases)}
    live.update({i: "submitted" for i in range(cases - GPUS - 100, cases - GPUS)})
    case_rows: list[dict[str, Any]] = []
    audit: list[dict[str, Any]] = []
    for i in range(cases):
        status = live.get(i, TERMINAL[i % len(TERMINAL)])
        at = t0 + timedelta(seconds=i)
        gpu = f"srv{i % 2}/gpu{i % GPUS:02d}" if status == "running" else None
        case_rows.append(
            {
                "id": i + 1,
                "path": f"/data/cases/patient {i:06d}",
                "status": status,
                "progress": 100 if status == "completed" else 0,
                "attempt": 1,
                "host": f"srv{i % 2}",
                "gpu_name": gpu,
                "created_at": at,
                "status_updated_at": at,
                "completed_at": at if status in TERMINAL else None,
                "failure_reason": "MOQUI exit 3" if status == "failed" else None,
                "cancel_requested": 0,
                "transient_failures": 0,
                "version": 1,
            }
        )
        for k, (a, b) in enumerate(
            (("-", "submitted"), ("submitted", "submitting"), ("submitting", status))
        ):
            audit.append(
                {
                    "at": at + timedelta(milliseconds=k),
                    "entity": "case",
                    "case_id": i + 1,
                    "from_state": a,
                    "to_state": b,
                    "trigger": "step",
                    "detail": f"step {k}",
                }
            )
    gpus = []
    for g in range(GPUS):
        host = f"srv{g % 2}"
        holder = cases - GPUS + g + 1
        zombie = g < 3
        gpus.append(
            {
                "name": f"{host}/gpu{g:02d}",
                "host": host,
                "status": "zombie" if zombie else "assigned",
                "assigned_case_id": None if zombie else holder,
                "quarantined_case_id": g + 1 if zombie else None,
                "offline_requested": 0,
                "status_updated_at": t0,
                "version": 1,
            }
        )
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA foreign_keys = OFF")
        cols = list(case_rows[0])
        conn.exec_driver_sql(
            f"INSERT INTO cases ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            [tuple(r[c] for c in cols) for r in case_rows],
        )
        cols = list(audit[0])
        conn.exec_driver_sql(
            f"INSERT INTO case_transitions ({', '.join(cols)}) "
            f"VALUES ({', '.join('?' * len(cols))})",
            [tuple(r[c] for c in cols) for r in audit],
        )
        cols = list(gpus[0])
        conn.exec_driver_sql(
            f"INSERT INTO gpu_resources ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            [tuple(r[c] for c in cols) for r in gpus],
        )
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()


def plans(store: Store) -> list[str]:
    """EXPLAIN QUERY PLAN of every SELECT one snapshot runs."""
    seen: list[tuple[str, Any]] = []
    engine = store._engine  # the bench looks inside on purpose

    def capture(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, params))

    event.listen(engine, "before_cursor_execute", capture)
    take_snapshot(store, ["srv0", "srv1"], datetime.now(UTC))
    event.remove(engine, "before_cursor_execute", capture)
    out = []
    with engine.connect() as conn:
        for statement, params in seen:
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).fetchall()
            first = " ".join(statement.split())[:70]
            out.append(f"{first}...\n      " + " | ".join(str(r[-1]) for r in rows))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mqi-bench-top-"))
    url = f"sqlite:///{(root / 'mqi.db').as_posix()}"
    api.upgrade(url)
    t = time.perf_counter()
    fill(url, args.cases)
    print(
        f"filled {args.cases:,} cases, {3 * args.cases:,} audit rows, {GPUS} GPUs "
        f"in {time.perf_counter() - t:.1f} s"
    )
    config = root / "mqi.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "watch_dir": "cases",
                "results_dir": "results",
                "database_url": url,
                "hosts": {
                    h: {"scheduler": {"kind": "local"}, "remote_base": "/r"}
                    for h in ("srv0", "srv1")
                },
                "gpus": [
                    {"name": f"srv{g % 2}/gpu{g:02d}", "host": f"srv{g % 2}"} for g in range(GPUS)
                ],
            }
        )
    )

    with Store.open(url) as store:
        for line in plans(store):
            print("  plan:", line)
        snap_ms, plain_ms, rich_ms = [], [], []
        for _ in range(args.runs):
            t = time.perf_counter()
            snap = take_snapshot(store, ["srv0", "srv1"], datetime.now(UTC))
            snap_ms.append(1000 * (time.perf_counter() - t))
            t = time.perf_counter()
            plain_snapshot(snap, "db")
            plain_ms.append(1000 * (time.perf_counter() - t))
            t = time.perf_counter()
            console = Console(width=80, height=24, file=open("/dev/null", "w"))  # noqa: SIM115
            screen, _ = render_screen(snap, height=24, scroll=0, source="db")
            console.print(screen)
            rich_ms.append(1000 * (time.perf_counter() - t))
    exe = Path(sys.executable).parent / "mqi-communicator"
    proc_ms = []
    for _ in range(5):
        t = time.perf_counter()
        out = subprocess.run(
            [str(exe), "top", "--once", "--config", str(config)],
            capture_output=True,
            text=True,
            check=True,
        )
        proc_ms.append(1000 * (time.perf_counter() - t))
    imports_ms = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import mqi_communicator.cli"], check=True)
        imports_ms.append(1000 * (time.perf_counter() - t))
    med = statistics.median
    print(f"snapshot (all queries)      median {med(snap_ms):7.1f} ms  max {max(snap_ms):7.1f} ms")
    print(f"render plain                median {med(plain_ms):7.1f} ms")
    print(f"render Rich 80x24           median {med(rich_ms):7.1f} ms")
    print(
        f"refresh = snapshot + Rich   median {med(snap_ms) + med(rich_ms):7.1f} ms  (target < 200)"
    )
    print(
        f"`top --once` process        median {med(proc_ms):7.1f} ms  "
        f"({len(out.stdout.splitlines())} lines printed)"
    )
    print(
        f"  of which Python start + `import mqi_communicator.cli`: median {med(imports_ms):.1f} ms"
    )


if __name__ == "__main__":
    main()
