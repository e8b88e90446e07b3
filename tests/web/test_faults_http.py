"""The web console shows a GPU's and a host poll's persisted local errors (migration 0007).

Written through the store as the engine writes them (engine/fault.py), read by a real
uvicorn over HTTP; the error texts are escaped.
"""

from __future__ import annotations

from datetime import timedelta
from functools import partial

from mqi_communicator.engine.runtime import utcnow
from mqi_communicator.persistence.host_health import record_poll_fault
from mqi_communicator.statemachine import Evidence, EvidenceKind

from .conftest import Workspace, console_app, serve
from .test_http import Client

GPU = "local/gpu0"


def test_overview_and_gpu_page_show_check_and_poll_failures(ws: Workspace) -> None:
    comm, app = console_app(ws, ws.config())
    store, now = comm.store, utcnow()
    case, _ = store.register_case(str(ws.root / "stuck"), now)
    assert store.claim(case.id, now, lambda c, g: ("mqic-1-a1", "/r/1"), [GPU]) is not None
    store.apply(case.id, "confirm_submitted", None, None, evidence=None, now=now, job_id="7")
    lost = Evidence(EvidenceKind.KILL_UNCONFIRMED, "mqic-1-a1", now, detail="timeout")
    store.apply(case.id, "fail", GPU, "quarantine", evidence=lost, now=now)
    retry = now + timedelta(minutes=10)
    store.update_gpu(
        GPU,
        now,
        detail="local error",
        expected_label="mqic-1-a1",
        local_failures=3,
        last_error="checking the zombie: OSError: <bad>",
        next_attempt_at=retry,
    )
    store.write(
        partial(
            record_poll_fault,
            host="local",
            at=now,
            failures=2,
            error="KeyError: <x>",
            retry_at=retry,
        )
    )
    with serve(app) as base:
        web = Client(base)
        status, _, page = web.call("/")
        assert status == 200, page
        gpu_row = page.split(f'data-gpu="{GPU}"', 1)[1].split("</tr>", 1)[0]
        assert "check failing (3 in a row)" in gpu_row
        assert "checking the zombie: OSError: &lt;bad&gt;" in gpu_row
        host_row = page.split('data-host="local"', 1)[1].split("</tr>", 1)[0]
        assert "poll failing (2 in a row)" in host_row and "KeyError: &lt;x&gt;" in host_row
        status, _, detail = web.call(f"/gpus/{GPU}")
        assert status == 200, detail
        assert '<dd id="gpu-local-failures">3</dd>' in detail
        assert "OSError: &lt;bad&gt;" in detail and "next attempt (UTC)" in detail
