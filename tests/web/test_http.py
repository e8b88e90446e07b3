"""The web console over plain HTTP: every page and /metrics on both backends, CSRF,
read-only mode, the access token, and the CLI's refusal to listen openly without one."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from mqi_communicator import CaseState, GpuState
from mqi_communicator.cli import main
from mqi_communicator.engine.backoff import HostHealth
from mqi_communicator.engine.health_record import HealthRecorder
from mqi_communicator.engine.runtime import utcnow
from mqi_communicator.migrations.api import upgrade
from mqi_communicator.notify import HookDispatcher

from ..notify.receiver import free_port
from ..service.conftest import tick_until
from .conftest import Workspace, console_app, serve

HOSTILE = "<img src=x onerror=alert(1)> & co"
TOKEN = "tok-3f9a1c0d5e7b2a4968e1"


class Client:
    """urllib with a cookie jar; ``call`` returns (status, headers, body) without raising."""

    def __init__(self, base: str, headers: dict[str, str] | None = None) -> None:
        self.base = base
        self.headers = headers or {}
        jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(jar), _NoRedirect()
        )
        self.seen: list[str] = []

    def call(
        self, path: str, form: dict[str, str] | None = None, **headers: str
    ) -> tuple[int, dict[str, str], str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(
            self.base + path, data=data, headers={**self.headers, **headers}
        )
        try:
            with self.opener.open(req) as r:
                status, head, body = r.status, dict(r.headers), r.read().decode()
        except urllib.error.HTTPError as err:
            status, head, body = err.code, dict(err.headers), err.read().decode()
        self.seen.append(str(head) + body)
        return status, head, body

    def csrf(self, path: str) -> str:
        status, _, body = self.call(path)
        assert status == 200, body
        found = re.search(r'name="csrf" value="([0-9a-f]{64})"', body)
        assert found, body
        return found.group(1)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


@pytest.mark.parametrize(
    "db_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_pages_and_metrics_on_both_backends(ws: Workspace, db_url: str) -> None:
    upgrade(db_url)
    # A webhook nobody listens on: the completion event's delivery really fails.
    hooks = {"targets": {"nobody": {"url": f"http://127.0.0.1:{free_port()}/hook"}}}
    config = ws.config(
        command="mkdir -p output; echo x > output/r", database_url=db_url, hooks=hooks
    )
    runner = ws.communicator(config)
    ws.drop_case(HOSTILE)
    tick_until(runner, lambda: any(c.status is CaseState.COMPLETED for c in runner.cases()), "done")
    assert HookDispatcher(runner.store, config.hooks).deliver_due() == 1
    (case,) = runner.cases()
    _, app = console_app(ws, config)
    with serve(app) as base:
        web = Client(base)
        for path in (
            "/",
            "/cases",
            "/cases?state=completed",
            "/cases?q=onerror",
            f"/cases/{case.id}",
            "/gpus/local/gpu0",
        ):
            status, head, body = web.call(path)
            assert status == 200, (path, body)
            assert HOSTILE not in body, f"{path}: the case name reached the page unescaped"
            if "gpus" not in path:  # a free GPU's page names no case
                assert "&lt;img src=x onerror=alert(1)&gt; &amp; co" in body, path
            assert "script-src 'self'" in head["content-security-policy"]
        assert "no case matches" in web.call("/cases?state=failed&q=img")[2]
        assert "r</td>" in web.call(f"/cases/{case.id}")[2]  # the result file is listed
        status, head, metrics = web.call("/metrics")
    assert status == 200 and head["content-type"].startswith("text/plain")
    for line in (
        'mqi_cases{state="completed"} 1.0',
        'mqi_gpus{state="available"} 1.0',
        'mqi_transitions_total{entity="case",trigger="claim"} 1.0',
        'mqi_transitions_total{entity="gpu",trigger="release"} 1.0',
        "mqi_job_duration_seconds_count 1.0",
        'mqi_transfer_duration_seconds_count{direction="upload"} 1.0',
        'mqi_transfer_duration_seconds_count{direction="download"} 1.0',
        "# mqi_transfer_bytes_total: not available yet",
        # The engine polled the host while the job ran: it recorded it up.
        'mqi_host_up{host="local"} 1.0',
        "mqi_hook_failures_total 1.0",
        'mqi_hook_events{status="pending"} 1.0',
        'mqi_hook_events{status="delivered"} 0.0',
    ):
        assert line in metrics, line
    assert "mqi_hook_failures_total: not available" not in metrics


def test_overview_and_metrics_show_the_recorded_host_health(ws: Workspace) -> None:
    config = ws.config()
    comm, app = console_app(ws, config)
    # The engine's own wiring: its in-memory decision, recorded through the store.
    health = HostHealth(on_change=HealthRecorder(comm.store, utcnow))
    with serve(app) as base:
        web = Client(base)
        assert "not contacted by the engine yet" in web.call("/")[2]
        metrics = web.call("/metrics")[2]
        assert "mqi_host_up{" not in metrics
        assert "# mqi_host_up: no health recorded yet for local" in metrics
        health.failed("local", utcnow(), "connect: <Connection refused>")
        _, _, page = web.call("/")
        row = page.split('data-host="local"', 1)[1].split("</tr>", 1)[0]
        assert "host-down" in page and "down</span>" in row
        assert "connect: &lt;Connection refused&gt;" in row and "failed tries: 1" in row
        assert 'mqi_host_up{host="local"} 0.0' in web.call("/metrics")[2]
        health.succeeded("local")
        assert "host-up" in web.call("/")[2]
        assert 'mqi_host_up{host="local"} 1.0' in web.call("/metrics")[2]


def _gpu_untouched(ws: Workspace) -> bool:
    (gpu,) = ws.comms[0].gpus()
    moves = [t for t in ws.comms[0].history(gpu_name=gpu.name) if t.trigger != "add"]
    return gpu.status is GpuState.AVAILABLE and not gpu.offline_requested and not moves


def test_actions_need_their_session_token_and_same_origin(ws: Workspace) -> None:
    comm, app = console_app(ws, ws.config())
    target = "/act/gpu/offline/local/gpu0"
    with serve(app) as base:
        web, other = Client(base), Client(base)
        assert web.call("/act/case/cancel/999")[0] == 404
        assert web.call("/act/gpu/offline/no/such")[0] == 404
        assert web.call("/act/gpu/explode/local/gpu0")[0] == 404
        token = web.csrf(target)
        other_token = other.csrf(target)
        assert token != other_token
        assert web.call(target, {})[0] == 403
        assert web.call(target, {"csrf": other_token})[0] == 403
        assert web.call(target, {"csrf": token}, Origin="http://evil.example")[0] == 403
        assert web.call(target, {"csrf": token}, Origin="null")[0] == 403
        assert _gpu_untouched(ws), "a refused POST changed the database"
        status, _, body = web.call(target, {"csrf": token}, Origin=base)
    assert status == 200 and "gpu local/gpu0 is offline" in body
    (gpu,) = comm.gpus()
    assert gpu.status is GpuState.OFFLINE
    assert [t.trigger for t in comm.history(gpu_name=gpu.name)][-1] == "take_offline"


def test_zombie_release_needs_the_attestation_and_a_reason(ws: Workspace) -> None:
    # TERM ignored, a kill window shorter than the SIGKILL grace: a real zombie.
    config = ws.config(
        command="trap '' TERM; sleep 300",
        engine={"job_timeout_s": 1, "kill_confirm_s": 0.5},
        scheduler={"kill_grace_s": 60},
    )
    runner = ws.communicator(config)
    ws.drop_case("stuck")
    tick_until(runner, lambda: runner.gpus()[0].status is GpuState.ZOMBIE, "zombie")
    (gpu,) = runner.gpus()
    comm, app = console_app(ws, config)
    target = f"/act/gpu/release/{gpu.name}"
    with serve(app) as base:
        web = Client(base)
        assert f'href="{target}"' in web.call(f"/gpus/{gpu.name}")[2]
        _, _, page = web.call(target)
        assert "no scheduler task with label" in page and str(gpu.job_label) in page
        assert 'name="job_gone"' in page and 'name="reason"' in page
        token = web.csrf(target)
        refusals = [
            {"csrf": token, "reason": "host reinstalled"},
            {"csrf": token, "reason": "   ", "job_gone": "yes"},
            {"csrf": token, "reason": "host reinstalled", "job_gone": "on"},
        ]
        for form in refusals:
            status, _, body = web.call(target, form, Origin=base)
            assert status == 409 and "not released" in body, (form, body)
        assert comm.gpus()[0].status is GpuState.ZOMBIE, "a refused release freed the GPU"
        form = {"csrf": token, "reason": "host\nreinstalled", "job_gone": "yes"}
        status, _, body = web.call(target, form, Origin=base)
        assert status == 200 and "released on the word of web:127.0.0.1" in body, body
    assert comm.gpus()[0].status is GpuState.AVAILABLE
    (release,) = [t for t in comm.history(gpu_name=gpu.name) if t.trigger == "operator_release"]
    assert release.evidence is not None and release.evidence.actor == "web:127.0.0.1"
    assert release.evidence.detail == "host reinstalled"  # one line, as logged


def test_read_only_mode_offers_and_accepts_no_action(ws: Workspace) -> None:
    _, app = console_app(ws, ws.config(), read_only=True)
    with serve(app) as base:
        web = Client(base)
        _, _, page = web.call("/gpus/local/gpu0")
        assert "read-only" in page and "/act/" not in page
        assert web.call("/act/gpu/offline/local/gpu0")[0] == 403
        token = web.csrf("/login")
        assert web.call("/act/gpu/offline/local/gpu0", {"csrf": token}, Origin=base)[0] == 403
    assert _gpu_untouched(ws)


def test_token_guards_every_request_and_never_shows(ws: Workspace) -> None:
    _, app = console_app(ws, ws.config(), token=TOKEN)
    with serve(app) as base:
        anon = Client(base)
        status, head, _ = anon.call("/", Accept="text/html")
        assert status == 303 and head["location"] == "/login"
        assert anon.call("/metrics")[0] == 401
        assert anon.call("/fragments/overview")[0] == 401
        assert anon.call("/static/style.css")[0] == 200  # the login page's style
        bearer = Client(base, {"Authorization": f"Bearer {TOKEN}"})
        assert bearer.call("/metrics")[0] == 200
        assert Client(base, {"Authorization": "Bearer wrong"}).call("/metrics")[0] == 401
        user = Client(base)
        csrf = user.csrf("/login")
        status, _, body = user.call("/login", {"csrf": csrf, "token": "nope"})
        assert status == 401 and "not the token" in body
        assert user.call("/")[0] == 401
        status, head, _ = user.call("/login", {"csrf": csrf, "token": TOKEN})
        assert status == 303 and TOKEN not in head.get("set-cookie", "")
        assert user.call("/")[0] == 200
        assert user.call("/gpus/local/gpu0")[0] == 200
    for client in (anon, bearer, user):
        assert not any(TOKEN in seen for seen in client.seen), "the token was echoed"


def test_cli_refuses_an_open_address_without_a_token(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "watch_dir: cases\nresults_dir: results\n"
        "hosts: {local: {scheduler: {kind: local}, remote_base: remote}}\n"
        "gpus: [{name: local/gpu0, host: local}]\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["web", "--host", "0.0.0.0", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert "refusing to listen on 0.0.0.0 without a token" in result.output
    assert not (tmp_path / "mqi-communicator.db").exists(), "the refusal touched the database"
