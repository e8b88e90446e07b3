"""One contract suite for every Transport (LocalTransport and SshTransport to a real sshd).

The "far side" of the loopback sshd is this machine, so tests check remote results
directly on the filesystem: a name must exist exactly, a canary must not.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import string
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mqi_communicator.errors import (
    CaseContentError,
    HostUnreachableError,
    RemoteCommandError,
    RemoteSourceMissingError,
    TransferError,
)
from mqi_communicator.remote.protocol import Transport
from mqi_communicator.remote.transfer import ssh_upload as ssh_upload_mod
from mqi_communicator.remote.transfer.manifest import Manifest
from mqi_communicator.remote.transfer.tarstream import (
    CaseTree,
    TarExtractor,
    enumerate_tree,
    iter_tar_chunks,
)
from mqi_communicator.remote.transport import local as local_transport_mod
from mqi_communicator.remote.transport.local import LocalTransport
from tests.infra.sshd import SshServer, make_ssh_transport

# The injected commands (if they ever ran) would create ~/<canary>; names hold no "/".
HOSTILE = "a b'$(cd;touch {canary})\"`cd;touch {canary}`;cd;touch {canary} \n\u00e9\u6f22 \\n *"


@pytest.fixture
def canary() -> Iterator[Path]:
    path = Path.home() / f"mqi_canary_{os.getpid()}_{random.randrange(10**9)}"
    yield path
    path.unlink(missing_ok=True)


@dataclass
class Side:
    """A transport under test plus a scratch area on its far side."""

    kind: str
    transport: Transport
    remote: Path  # far-side scratch dir (same filesystem: loopback)
    local: Path  # control-PC scratch dir
    server: SshServer | None


@pytest.fixture(params=["local", "ssh"])
def side(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Side]:
    remote = tmp_path / "remote"
    local = tmp_path / "local"
    remote.mkdir()
    local.mkdir()
    if request.param == "local":
        t: Transport = LocalTransport()
        server = None
    else:
        server = request.getfixturevalue("sshd")
        server.start()
        t = make_ssh_transport(server)
    try:
        yield Side(request.param, t, remote, local, server)
    finally:
        t.close()


def sha_tree(root: Path) -> dict[str, str]:
    """sha256 of every regular file under root (symlinks followed), by relative path."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def make_case(root: Path, *, big: int = 0) -> Path:
    rng = random.Random(7)
    (root / "CT" / "deep" / "er").mkdir(parents=True)
    (root / "empty_dir").mkdir()
    for i in range(12):
        (root / "CT" / f"slice_{i:03d}.dcm").write_bytes(rng.randbytes(rng.randint(0, 40_000)))
    (root / "CT" / "deep" / "er" / "plan.dcm").write_bytes(rng.randbytes(200_000))
    (root / "RTPLAN \u00e9\u6f22 'x'.dcm").write_bytes(b"plan")
    (root / "new\nline").write_bytes(b"nl")
    (root / "back\\slash").write_bytes(b"bs")
    (root / "-dash").write_bytes(b"dash")
    (root / "zero").write_bytes(b"")
    (root / "link_to_plan").symlink_to("CT/deep/er/plan.dcm")
    if big:
        (root / "big.bin").write_bytes(rng.randbytes(big))
    return root


def no_partials(parent: Path) -> bool:
    return not parent.exists() or not [p for p in parent.iterdir() if ".partial-" in p.name]


# ---------------------------------------------------------------- run()


def test_run_returns_exit_code_stdout_stderr(side: Side) -> None:
    r = side.transport.run("echo out; echo err >&2; exit 3", timeout=30)
    assert (r.exit_code, r.stdout, r.stderr) == (3, "out\n", "err\n")
    r = side.transport.run(["sh", "-c", "exit 5"], timeout=30)
    assert r.exit_code == 5
    r = side.transport.run(["definitely-not-a-command-mqi"], timeout=30)
    assert r.exit_code == 127


def test_run_passes_stdin(side: Side) -> None:
    data = "".join(random.Random(1).choices(string.ascii_letters, k=2_000_000)).encode()
    r = side.transport.run(["cat"], timeout=60, stdin=data)
    assert r.exit_code == 0
    assert r.stdout.encode() == data


def test_run_with_unread_stdin_still_returns_the_exit_code(side: Side) -> None:
    # The host answered (exit 4) without reading 8 MB of stdin: not "unreachable".
    r = side.transport.run("exit 4", timeout=60, stdin=b"x" * 8_000_000)
    assert r.exit_code == 4


def test_run_timeout_raises_host_unreachable_and_transport_survives(side: Side) -> None:
    with pytest.raises(HostUnreachableError, match="timeout"):
        side.transport.run(["sleep", "10"], timeout=0.5)
    assert side.transport.run(["echo", "still here"], timeout=30).stdout == "still here\n"


def test_hostile_names_arrive_exactly_and_run_nothing(side: Side, canary: Path) -> None:
    name = HOSTILE.format(canary=canary.name)
    target = side.remote / name
    r = side.transport.run(["mkdir", "--", str(target)], timeout=30)
    assert r.exit_code == 0, r.stderr
    r = side.transport.run(["touch", "--", str(target / name)], timeout=30)
    assert r.exit_code == 0, r.stderr
    assert [p.name for p in side.remote.iterdir()] == [name]
    assert [p.name for p in target.iterdir()] == [name]
    assert not canary.exists()
    r = side.transport.run(["printf", "%s", name], timeout=30)
    assert r.stdout == name


def test_env_values_are_quoted(side: Side, sshd_or_none: SshServer | None, canary: Path) -> None:
    value = f"$(cd;touch {canary.name}) 'q' \"d\" ; cd; touch {canary.name} `touch {canary}`"
    t: Transport
    if side.kind == "local":
        t = LocalTransport(env={"MQI_X": value})
    else:
        assert sshd_or_none is not None
        t = make_ssh_transport(sshd_or_none, env={"MQI_X": value})
    try:
        assert t.run(["sh", "-c", 'printf %s "$MQI_X"'], timeout=30).stdout == value
        assert t.run('printf %s "$MQI_X"', timeout=30).stdout == value
    finally:
        t.close()
    assert not canary.exists()


@pytest.fixture
def sshd_or_none(request: pytest.FixtureRequest) -> SshServer | None:
    if "ssh" in request.node.callspec.id:
        server: SshServer = request.getfixturevalue("sshd")
        return server
    return None


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=40))
def test_any_argument_round_trips(side: Side, arg: str) -> None:
    r = side.transport.run(["printf", "%s", arg], timeout=30)
    assert r.exit_code == 0
    assert r.stdout == arg


# ---------------------------------------------------------------- transfers


def test_upload_download_round_trip_is_verified(side: Side) -> None:
    src = make_case(side.local / "case")
    before = sha_tree(src)
    dest = side.remote / "base" / "mqic_case_1_a1"
    up = side.transport.upload_tree(src, str(dest))
    assert sha_tree(dest) == before
    assert (dest / "empty_dir").is_dir()
    assert (up.files, up.bytes) == (
        len(before),
        sum(p.stat().st_size for p in src.rglob("*") if p.is_file()),
    )
    assert no_partials(dest.parent)
    back = side.local / "back" / "out"
    down = side.transport.download_tree(str(dest), back)
    assert sha_tree(back) == before
    assert down.manifest_sha256 == up.manifest_sha256
    assert no_partials(back.parent)
    assert sha_tree(src) == before  # source untouched


def test_upload_to_hostile_remote_name(side: Side, canary: Path) -> None:
    dest = side.remote / HOSTILE.format(canary=canary.name)
    src = make_case(side.local / "case")
    side.transport.upload_tree(src, str(dest))
    assert sha_tree(dest) == sha_tree(src)
    assert not canary.exists()
    assert [p.name for p in side.remote.iterdir()] == [dest.name]


def test_upload_refuses_existing_remote_dir(side: Side) -> None:
    dest = side.remote / "exists"
    dest.mkdir()
    (dest / "keep").write_text("mine")
    src = make_case(side.local / "case")
    with pytest.raises(RemoteCommandError, match="already exists"):
        side.transport.upload_tree(src, str(dest))
    assert [p.name for p in dest.iterdir()] == ["keep"]
    assert (dest / "keep").read_text() == "mine"
    assert no_partials(side.remote)


def test_download_refuses_existing_local_dir(side: Side) -> None:
    src = make_case(side.remote / "src")
    dest = side.local / "exists"
    dest.mkdir()
    with pytest.raises(RemoteCommandError, match="already exists"):
        side.transport.download_tree(str(src), dest)
    assert list(dest.iterdir()) == []
    assert no_partials(side.local)


def test_download_of_missing_remote_dir_is_refused(side: Side) -> None:
    # Its own class: the engine reads it as "the job produced no result files".
    with pytest.raises(RemoteSourceMissingError):
        side.transport.download_tree(str(side.remote / "nope"), side.local / "out")
    assert not (side.local / "out").exists()


def _plant_results_lookalike(kind: str, src: Path, outside: Path) -> list[str]:
    """Give the case its own results folder ``output`` in the form ``kind``; return the
    top-level names that must be left out."""
    outside.mkdir()
    (outside / "stale.dat").write_bytes(b"stale elsewhere")
    if kind == "folder":
        (src / "output" / "sub").mkdir(parents=True)
        (src / "output" / "stale.dat").write_bytes(b"stale")
        (src / "output" / "sub" / "deep.dat").write_bytes(b"stale too")
        return ["output"]
    if kind == "file":
        (src / "output").write_bytes(b"stale")
        return ["output"]
    if kind == "symlink_to_outside_folder":  # was refused ("points outside the case")
        (src / "output").symlink_to(outside)
        return ["output"]
    if kind == "symlink_to_inside_file":
        (src / "output").symlink_to("CT/deep/er/plan.dcm")
        return ["output"]
    if kind == "broken_symlink":
        (src / "output").symlink_to("nowhere")
        return ["output"]
    assert kind == "letter_case"
    (src / "OUTPUT").mkdir()
    (src / "OUTPUT" / "stale.dat").write_bytes(b"stale")
    (src / "Output").write_bytes(b"stale")
    (src / "oUtPuT").symlink_to(outside)
    return ["OUTPUT", "Output", "oUtPuT"]


@pytest.mark.parametrize(
    "kind",
    [
        "folder",
        "file",
        "symlink_to_outside_folder",
        "symlink_to_inside_file",
        "broken_symlink",
        "letter_case",
    ],
)
def test_upload_leaves_out_the_case_results_folder_in_any_form(side: Side, kind: str) -> None:
    src = make_case(side.local / "case")
    # Look-alikes that are NOT the results folder still travel.
    (src / "outputs").mkdir()
    (src / "outputs" / "keep.dat").write_bytes(b"keep")
    (src / "output.txt").write_bytes(b"keep")
    (src / "CT" / "output").write_bytes(b"keep: not at the top")
    planted = _plant_results_lookalike(kind, src, side.local / "elsewhere")
    before = {p: os.lstat(src / p) for p in planted}
    sent = {k: v for k, v in sha_tree(src).items() if k.split("/")[0] not in planted}
    dest = side.remote / "base" / "case"
    report = side.transport.upload_tree(src, str(dest), exclude=("output",))
    assert sorted(report.excluded) == sorted(planted)
    assert [p.name for p in dest.iterdir() if p.name.casefold() == "output"] == []
    assert sha_tree(dest) == sent
    assert report.files == len(sent)
    assert (dest / "outputs" / "keep.dat").is_file() and (dest / "CT" / "output").is_file()
    assert {p: os.lstat(src / p) for p in planted} == before  # the case is untouched
    assert no_partials(dest.parent)


def test_upload_exclusion_of_a_nested_path_keeps_its_siblings(side: Side) -> None:
    src = make_case(side.local / "case")
    dest = side.remote / "case"
    report = side.transport.upload_tree(src, str(dest), exclude=("ct/DEEP/",))
    assert report.excluded == ("CT/deep",)
    assert not (dest / "CT" / "deep").exists()
    assert sha_tree(dest) == {k: v for k, v in sha_tree(src).items() if "CT/deep/" not in k}


def test_upload_of_a_case_holding_only_its_results_is_refused(side: Side) -> None:
    src = side.local / "case"
    (src / "output").mkdir(parents=True)
    (src / "output" / "stale.dat").write_bytes(b"stale")
    with pytest.raises(CaseContentError, match="no files besides output"):
        side.transport.upload_tree(src, str(side.remote / "case"), exclude=("output",))
    assert list(side.remote.iterdir()) == []


@pytest.mark.parametrize("target", ["outside_file", "/etc/passwd", "../.."])
def test_escaping_symlink_is_refused_before_sending(side: Side, target: str) -> None:
    src = make_case(side.local / "case")
    (side.local / "outside_file").write_text("secret")
    link = src / "CT" / "escape"
    link.symlink_to(side.local / target if target == "outside_file" else target)
    dest = side.remote / "base" / "case"
    with pytest.raises(CaseContentError, match="escape"):
        side.transport.upload_tree(src, str(dest))
    assert not (side.remote / "base").exists()  # nothing at all was created remotely


def test_special_files_and_empty_cases_are_refused(side: Side) -> None:
    src = make_case(side.local / "case")
    os.mkfifo(src / "fifo")
    with pytest.raises(CaseContentError, match="fifo"):
        side.transport.upload_tree(src, str(side.remote / "a"))
    empty = side.local / "empty"
    (empty / "sub").mkdir(parents=True)
    with pytest.raises(CaseContentError, match="no files"):
        side.transport.upload_tree(empty, str(side.remote / "b"))
    assert list(side.remote.iterdir()) == []


_UPLOAD_AS_UNPRIVILEGED = """
import json, sys
from pathlib import Path
args = json.loads(sys.argv[1])
if args["kind"] == "local":
    from mqi_communicator.remote.transport.local import LocalTransport
    t = LocalTransport()
else:
    from mqi_communicator.remote.transport.ssh import SshTransport
    t = SshTransport("x", args["host"], port=args["port"], user="root",
                     key_filename=Path(args["key"]), known_hosts=Path(args["known_hosts"]))
try:
    t.upload_tree(Path(args["src"]), args["dest"])
    print(json.dumps({"error": None}))
except Exception as err:
    print(json.dumps({"error": type(err).__name__, "message": str(err)}))
"""


def test_unreadable_file_is_refused_before_sending(side: Side) -> None:
    # We run as root, and root reads anything. Run the upload in a child without the
    # DAC-override capabilities (setpriv drops them from the bounding set), so
    # permissions apply to it as to any service account.
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to drop CAP_DAC_OVERRIDE")
    src = make_case(side.local / "case")
    secret = src / "CT" / "locked.dcm"
    secret.write_bytes(b"x")
    secret.chmod(0)
    dest = side.remote / "base" / "case"
    args = {"kind": side.kind, "src": str(src), "dest": str(dest)}
    if side.server is not None:
        args.update(
            host=side.server.host,
            port=side.server.port,
            key=str(side.server.key_path),
            known_hosts=str(side.server.known_hosts),
        )
    proc = subprocess.run(
        [
            "setpriv",
            "--bounding-set=-dac_override,-dac_read_search",
            sys.executable,
            "-c",
            _UPLOAD_AS_UNPRIVILEGED,
            json.dumps(args),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[3],
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["error"] == "CaseContentError", result
    assert str(secret) in result["message"]
    assert not (side.remote / "base").exists()


def test_progress_is_monotone_and_reaches_total(side: Side) -> None:
    src = make_case(side.local / "case", big=5_000_000)
    calls: list[tuple[int, int]] = []
    report = side.transport.upload_tree(
        src, str(side.remote / "up"), progress=lambda d, t: calls.append((d, t))
    )
    assert len(calls) >= 3
    done = [d for d, _ in calls]
    assert done == sorted(done)
    assert {t for _, t in calls} == {report.bytes}
    assert calls[-1] == (report.bytes, report.bytes)
    down: list[tuple[int, int]] = []
    report2 = side.transport.download_tree(
        str(side.remote / "up"), side.local / "down", progress=lambda d, t: down.append((d, t))
    )
    assert [d for d, _ in down] == sorted(d for d, _ in down)
    assert down[-1] == (report2.bytes, report2.bytes)
    assert len(down) >= 3


# ---------------------------------------------------------------- building blocks


@pytest.mark.parametrize(
    ("make_gnu", "extract_gnu"), [(False, False), (True, False), (False, True)]
)
def test_tarfile_fallback_round_trips_like_gnu_tar(
    tmp_path: Path, make_gnu: bool, extract_gnu: bool
) -> None:
    """The no-GNU-tar path (Windows) produces and reads the same trees."""
    src = make_case(tmp_path / "case")
    tree = enumerate_tree(src)
    dest = tmp_path / "out"
    dest.mkdir()
    ex = TarExtractor(dest, use_system_tar=extract_gnu)
    for chunk in iter_tar_chunks(tree, use_system_tar=make_gnu):
        ex.write(chunk)
    ex.close()
    assert sha_tree(dest) == sha_tree(src)
    assert (dest / "empty_dir").is_dir()
    assert not (dest / "link_to_plan").is_symlink()  # in-case symlinks arrive as files


def change_after_hashing(monkeypatch: pytest.MonkeyPatch, path: Path) -> threading.Event:
    """Make the next upload see ``path`` change between hashing and sending.

    Seams, not a progress callback (which raced the hashing thread): ``path`` is
    rewritten right after the upload's local manifest is hashed, and the SSH upload's
    tar producer starts reading only after that, so the bytes sent are always the
    changed ones whatever the thread timing. The event is set once the change is made.
    """
    hashed = threading.Event()

    def hash_then_change(real: Callable[..., Manifest]) -> Callable[..., Manifest]:
        def spy(files: Iterable[tuple[str, Path]], **kw: int) -> Manifest:
            manifest = real(files, **kw)
            if not hashed.is_set():  # the first call is the upload's own manifest
                path.write_bytes(b"changed after the manifest was made")
                hashed.set()
            return manifest

        return spy

    def tar_after_hashing(tree: CaseTree, **kw: bool | None) -> Iterator[bytes]:
        assert hashed.wait(timeout=60), "the upload never hashed its manifest"
        yield from iter_tar_chunks(tree, **kw)

    for module in (local_transport_mod, ssh_upload_mod):
        monkeypatch.setattr(module, "manifest_of_files", hash_then_change(module.manifest_of_files))
    monkeypatch.setattr(ssh_upload_mod, "iter_tar_chunks", tar_after_hashing)
    return hashed


def test_content_changed_after_hashing_fails_verification(
    side: Side, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer racing the upload: the copy no longer matches the manifest we made."""
    src = make_case(side.local / "case")
    hashed = change_after_hashing(monkeypatch, src / "zero")

    dest = side.remote / "case"
    with pytest.raises(TransferError, match="verif"):
        side.transport.upload_tree(src, str(dest))
    assert hashed.is_set()
    assert not dest.exists()
    assert no_partials(side.remote)
