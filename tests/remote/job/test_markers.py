"""The marker shell fragments, run by a real ``sh`` on real directories."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqi_communicator.remote.job import markers
from mqi_communicator.remote.job.marker_probe import _key

from .test_wrapper import install, mqi, token_for

HOSTILE_NAMES = [
    "plain",
    "with space",
    "quote'single",
    'quote"double',
    "dollar$(touch PWNED)",
    "back`touch PWNED`tick",
    "semi;colon&amp",
    "ünïcödé-案例",
    "-leading-dash",
    "star*and?glob[1]",
]


def sh(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)


def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_install_and_probe_survive_hostile_names(tmp_path: Path, name: str) -> None:
    case = tmp_path / name
    case.mkdir()
    label = f"lab {name}"
    installed = subprocess.run(
        ["sh", "-c", markers.READ_TOKEN + markers.install_snippet(str(case), label)],
        input=token_for(case) + "\n",
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout == ""
    assert (mqi(case) / "wrapper.sh").read_text() == markers.wrapper_source()
    assert (mqi(case) / "label").read_text() == label + "\n"
    assert (mqi(case) / "token").read_text() == token_for(case) + "\n"
    assert (mqi(case) / "token").stat().st_mode & 0o077 == 0, "the token is readable by us only"

    argv = markers.wrapper_argv(str(case), label, ["sh", "-c", "echo out; exit 4"])
    done = subprocess.run(argv, capture_output=True, text=True, start_new_session=True)
    assert done.returncode == 4
    assert done.stdout == "" and done.stderr == ""

    probe = sh(markers.probe_snippet([str(case)]))
    assert probe.returncode == 0
    info = markers.parse_probe(probe.stdout)[str(case)]
    assert info.dir_exists and info.label == label and info.token == token_for(case)
    assert info.exit_code == 4 and info.log_tail == "out\n"
    assert info.group_alive is False and info.token_procs == 0
    assert info.processes_gone is True
    assert not list(tmp_path.rglob("PWNED")) and not Path("PWNED").exists()


def test_probe_many_dirs_in_one_command(tmp_path: Path) -> None:
    running = tmp_path / "running"
    missing = tmp_path / "missing"
    empty = tmp_path / "empty"
    ok = tmp_path / "ok"
    for d in (running, empty, ok):
        d.mkdir()
    for d in (running, ok):
        install(d, d.name)
    subprocess.run(markers.wrapper_argv(str(ok), "ok", ["true"]), start_new_session=True)
    proc = subprocess.Popen(
        markers.wrapper_argv(str(running), "running", ["sleep", "60"]), start_new_session=True
    )
    try:
        dirs = [str(running), str(missing), str(empty), str(ok)]
        infos: dict[str, markers.MarkerInfo] = {}

        def both_started() -> bool:  # the wrapper, then its child (sleep), carry the token
            infos.update(markers.parse_probe(sh(markers.probe_snippet(dirs)).stdout))
            info = infos.get(str(running))
            # pgid and started come first: a token carrier alone may be put's own `mv`
            return info is not None and info.started is not None and info.token_procs == 2

        wait_for(both_started)
        assert set(infos) == set(dirs)
        assert infos[str(running)].group_alive is True
        assert infos[str(running)].pgid == proc.pid
        assert infos[str(running)].exit_code is None
        assert infos[str(running)].processes_gone is False
        assert infos[str(missing)].dir_exists is False
        assert infos[str(missing)].processes_gone is True
        assert infos[str(empty)].dir_exists and infos[str(empty)].pgid is None
        assert infos[str(ok)].exit_code == 0 and infos[str(ok)].log_tail == ""
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_probe_treats_eperm_as_alive() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to probe as another user")
    base = Path(tempfile.mkdtemp(prefix="mqi-eperm-"))
    try:
        base.chmod(0o755)
        mqi(base).mkdir(mode=0o755)
        script = markers.probe_snippet([str(base)])
        proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
        (mqi(base) / "pgid").write_text(f"{proc.pid}\n")
        (mqi(base) / "pgid").chmod(0o644)

        def probe_as_nobody() -> bool | None:
            out = subprocess.run(
                ["sh", "-c", script], capture_output=True, text=True, user=65534, timeout=30
            )
            return markers.parse_probe(out.stdout)[str(base)].group_alive

        try:
            # Signalling root's group as nobody fails with EPERM: that still means alive.
            assert probe_as_nobody() is True
        finally:
            proc.kill()
            proc.wait()
        assert probe_as_nobody() is False
    finally:
        shutil.rmtree(base)
        shutil.rmtree(mqi(base))


def test_parse_ignores_truncated_and_foreign_lines() -> None:
    tok = _key("/x", False)
    text = (
        "Welcome to the server\n"
        f"@mqi {tok} dir 1\n@mqi {tok} exit 0\n"  # no "end": truncated
        "@mqi !!!notbase64 dir 1\n@mqi !!!notbase64 end\n"
        f"@mqi {_key('/y', False)} dir maybe\n@mqi {_key('/y', False)} end\n"
    )
    assert markers.parse_probe(text) == {}


def test_parse_rejects_malformed_numbers() -> None:
    tok = _key("/z", False)
    text = f"@mqi {tok} dir 1\n@mqi {tok} exit 0x0\n@mqi {tok} pgid -5\n@mqi {tok} end\n"
    info = markers.parse_probe(text)["/z"]
    assert info.exit_code is None and info.pgid is None


_TA, _TB = "a" * 32, "b" * 32
_FULL = {
    "/a": markers.MarkerInfo(
        dir_exists=True,
        label="a",
        pgid=42,
        started=7,
        exit_code=3,
        group_alive=False,
        log_tail="boom\n",
        token=_TA,
        token_procs=0,
    ),
    "/b": markers.MarkerInfo(
        dir_exists=True, label="b", pgid=43, started=8, group_alive=True, token=_TB, token_procs=2
    ),
}
_RECORDS = "".join(
    f"@mqi {_key(d, False)} {k} {v}\n"
    for d, fields in {
        "/a": [
            ("dir", "1"),
            ("token", _TA),
            ("label", "a"),
            ("started", "7"),
            ("exit", "3"),
            ("pgid", "42"),
            ("kill", "sh: 1: kill: No such process"),
            ("tail", "Ym9vbQo="),
        ],
        "/b": [
            ("dir", "1"),
            ("token", _TB),
            ("label", "b"),
            ("started", "8"),
            ("pgid", "43"),
            ("kill", "alive"),
        ],
    }.items()
    for k, v in [*fields, ("end", "")]
).replace(" end \n", " end\n")
_SCAN = (
    "@mqi-scan canary 77\n"
    "/proc/77/environ:MQI_JOB_TOKEN=mqi-probe-canary\n"
    f"/proc/5/environ:MQI_JOB_TOKEN={_TB}\n/proc/6/environ:MQI_JOB_TOKEN={_TB}\n"
    "@mqi-scan end\n"
)
_VALID = _RECORDS + _SCAN


def test_valid_probe_output_parses() -> None:
    assert markers.parse_probe(_VALID) == _FULL


@given(st.integers(min_value=0, max_value=len(_VALID)), st.text(max_size=30))
def test_truncated_output_yields_whole_records_or_nothing(cut: int, junk: str) -> None:
    parsed = markers.parse_probe(_VALID[:cut] + junk)
    for remote_dir, info in parsed.items():
        # A cut before the scan's end leaves the token processes unknown, never 0.
        assert info == replace(_FULL[remote_dir], token_procs=info.token_procs)
        assert info.token_procs in (None, _FULL[remote_dir].token_procs)


@given(st.text().filter(lambda s: "@mqi" not in s))
def test_parse_of_text_without_records_is_empty(garbage: str) -> None:
    assert markers.parse_probe(garbage) == {}


@pytest.mark.parametrize("bad", ["", "two\nlines", "nul\0"])
def test_labels_must_be_one_line(bad: str) -> None:
    with pytest.raises(ValueError):
        markers.install_snippet("/tmp/x", bad)
    with pytest.raises(ValueError):
        markers.wrapper_argv("/tmp/x", bad, ["true"])


def test_wrapper_argv_shape() -> None:
    argv = markers.wrapper_argv("/a b/", "lab", ["moquisim", "--x"])
    assert argv == ["sh", "/a b.mqi/wrapper.sh", "lab", "--", "moquisim", "--x"]
    assert shlex.split(shlex.join(argv)) == argv
