"""Web console page times with 100,000 cases and 50 GPUs in SQLite.

Usage: python bench/bench_web.py [--cases 100000] [--gpus 50] [--repeat 15] [--keep DIR]

Bulk-inserts the cases (95 % completed, the rest failed, cancelled, running, waiting),
their audit rows (7 per finished case: 5 case moves, the GPU's assign and release) and
50 GPUs (most busy, 2 zombies) into a fresh SQLite database at the schema head. Then it
serves the web console with uvicorn on 127.0.0.1 and times real HTTP GETs of each page
(median and max of --repeat, after one warm-up): overview, the case list (first page,
filtered by a common and a rare state, 1,000 pages deep by keyset, a name search), a
case detail, a GPU detail, a live fragment, and /metrics (the first scrape, which reads
the whole audit trail once, and the steady scrapes after it). Target: under 200 ms per
page. Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import uvicorn  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from mqi_communicator import Communicator  # noqa: E402
from mqi_communicator.config import WebConfig, parse_config  # noqa: E402
from mqi_communicator.migrations.api import upgrade  # noqa: E402
from mqi_communicator.persistence.engine_setup import make_engine  # noqa: E402
from mqi_communicator.persistence.models import Case, CaseTransition, GpuResource  # noqa: E402
from mqi_communicator.statemachine import Evidence, EvidenceKind  # noqa: E402
from mqi_communicator.web import create_app  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _status(i: int, n: int, gpus: int) -> str:
    if i > n - 100:
        return "submitted"
    if i > n - 100 - (gpus - 5):
        return "running"
    return "failed" if i % 33 == 0 else "cancelled" if i % 101 == 0 else "completed"


def populate(url: str, n: int, gpus: int) -> None:
    """Fill the database with ``n`` cases, their audit rows and ``gpus`` GPUs."""
    upgrade(url)
    engine = make_engine(url)
    cases: list[dict[str, Any]] = []
    trail: list[dict[str, Any]] = []
    running: list[int] = []
    for i in range(1, n + 1):
        at = T0 + timedelta(minutes=i)
        status = _status(i, n, gpus)
        label = f"mqic-{i}-a1"
        gpu = f"local/gpu{i % gpus}"
        cases.append(
            {
                "id": i,
                "path": f"/data/mqi/cases/patient {i:06d}",
                "status": status,
                "progress": 100 if status == "completed" else 0,
                "attempt": 1,
                "label": None if status == "submitted" else label,
                "job_id": None if status == "submitted" else str(10_000 + i),
                "remote_dir": None if status == "submitted" else f"/srv/mqic/mqic_case_{i}_a1",
                "host": None if status == "submitted" else "local",
                "gpu_name": gpu if status == "running" else None,
                "failure_reason": "job exited with code 7" if status == "failed" else None,
                "cancel_requested": False,
                "transient_failures": 0,
                "created_at": at,
                "status_updated_at": at + timedelta(minutes=40),
                "version": 5,
            }
        )
        moves = [("-", "submitted", "register", None)]
        if status != "submitted":
            moves += [("submitted", "submitting", "claim", None)]
            moves += [("submitting", "running", "confirm_submitted", EvidenceKind.SUBMIT_ACCEPTED)]
        if status in ("completed", "failed", "cancelled"):
            end = {"completed": "retrieving", "failed": "failed", "cancelled": "cancelled"}
            trig = {"completed": "job_succeeded", "failed": "fail", "cancelled": "cancel"}
            moves += [("running", end[status], trig[status], EvidenceKind.OBSERVED_TERMINAL)]
            if status == "completed":
                moves += [("retrieving", "completed", "retrieved", None)]
        if status == "running":
            running.append(i)
        for k, (frm, to, trigger, kind) in enumerate(moves):
            when = at + timedelta(seconds=[0, 5, 30, 1800 + i % 3600, 1900 + i % 3600][k])
            ev = Evidence(kind, label, when).to_json() if kind is not None else None
            trail.append(_row(when, "case", i, gpu, frm, to, trigger, ev))
            if trigger in ("claim", "job_succeeded", "fail", "cancel"):
                gmove = ("available", "assigned", "assign") if trigger == "claim" else None
                gmove = gmove or ("assigned", "available", "release")
                trail.append(_row(when, "gpu", i, gpu, *gmove, ev))
    gpu_rows = []
    for g in range(gpus):
        holder = running[g] if g < len(running) else None
        state = "assigned" if holder else "zombie" if g >= gpus - 2 else "available"
        gpu_rows.append(
            {
                "name": f"local/gpu{g}",
                "host": "local",
                "status": state,
                "assigned_case_id": holder,
                "quarantined_case_id": 1 if state == "zombie" else None,
                "job_label": f"mqic-{holder}-a1" if holder else None,
                "offline_requested": False,
                "status_updated_at": T0,
                "version": 1,
            }
        )
    with engine.begin() as conn:
        conn.execute(insert(Case), cases)
        conn.execute(insert(GpuResource), gpu_rows)
        for start in range(0, len(trail), 50_000):
            conn.execute(insert(CaseTransition), trail[start : start + 50_000])
    engine.dispose()
    print(f"database: {n:,} cases, {len(trail):,} audit rows, {gpus} GPUs")


def _row(at: datetime, entity: str, case_id: int, gpu: str, *move: Any) -> dict[str, Any]:
    frm, to, trigger, ev = move
    return {
        "at": at,
        "entity": entity,
        "case_id": case_id,
        "gpu_name": gpu,
        "from_state": frm,
        "to_state": to,
        "trigger": trigger,
        "evidence": ev,
        "detail": "",
        "attempt": 1 if entity == "case" else None,
        "label": f"mqic-{case_id}-a1" if entity == "case" else None,
    }


def get_ms(url: str) -> float:
    """One GET, in milliseconds; the status must be 200."""
    start = time.perf_counter()
    with urllib.request.urlopen(url) as r:
        r.read()
        assert r.status == 200, url
    return (time.perf_counter() - start) * 1000


def main() -> None:
    """Populate, serve, time each page, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--gpus", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--keep", type=Path, default=None, help="work in DIR and keep it")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="mqi-bench-web-"))
    work.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{(work / 'mqi.db').as_posix()}"
    started = time.perf_counter()
    populate(url, args.cases, args.gpus)
    print(f"populated in {time.perf_counter() - started:.1f} s")
    config = parse_config(
        {
            "watch_dir": "cases",
            "results_dir": "results",
            "database_url": url,
            "hosts": {"local": {"scheduler": {"kind": "local"}, "remote_base": "remote"}},
            "gpus": [{"name": f"local/gpu{g}", "host": "local"} for g in range(args.gpus)],
        },
        base_dir=work,
        env={},
    )
    comm = Communicator(config, watch=False, create_db=False)
    app = create_app(comm, WebConfig())
    server = uvicorn.Server(uvicorn.Config(app, port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    first_scrape = get_ms(f"{base}/metrics")
    mid = args.cases // 2
    pages = {
        "overview /": "/",
        "cases, first page": "/cases",
        "cases, state=completed": "/cases?state=completed",
        "cases, state=running (rare)": "/cases?state=running",
        "cases, 1,000 pages deep": f"/cases?before={args.cases - 50_000}",
        "cases, name search": "/cases?q=patient%200500",
        "case detail": f"/cases/{mid}",
        "GPU detail": "/gpus/local/gpu7",
        "overview fragment (poll)": "/fragments/overview",
        "metrics (steady scrape)": "/metrics",
    }
    print(f"\n{'page':32} {'median ms':>10} {'max ms':>8}")
    print(f"{'metrics (first scrape)':32} {first_scrape:10.1f} {'':>8}")
    for name, path in pages.items():
        get_ms(base + path)  # warm-up
        times = [get_ms(base + path) for _ in range(args.repeat)]
        flag = "" if statistics.median(times) < 200 else "  <-- over the 200 ms target"
        print(f"{name:32} {statistics.median(times):10.1f} {max(times):8.1f}{flag}")
    server.should_exit = True
    thread.join(timeout=10)
    comm.close()
    print(f"\nwork dir: {work}")


if __name__ == "__main__":
    main()
