"""far_side_receiver.py run as ssh_upload runs it on the GPU server.

Each test starts ``python -c <receiver source> PARTIAL`` with the framed stdin
(tar archive, NUL padding, manifest text, ``#end <files>`` trailer) under this
interpreter and under Python 3.6 (the oldest far side) when one is installed.
Hostile archives are built with :mod:`tarfile`; PARTIAL sits in a ``box`` with a
sentinel file beside it, so anything written outside PARTIAL shows.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from mqi_communicator.remote.transfer.far_side_scripts import receiver_source
from mqi_communicator.remote.transfer.manifest import Manifest, ManifestEntry, manifest_of_files
from mqi_communicator.remote.transfer.tarstream import enumerate_tree, iter_tar_chunks
from tests.remote.transport.test_transport_contract import make_case, sha_tree

SENTINEL = b"outside PARTIAL, must stay as it is"


@cache
def python36() -> str | None:
    """A working Python 3.6: python3.6 on PATH (pyenv shims may not run) or pyenv's."""
    found = [shutil.which("python3.6")]
    found += sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.6*/bin/python3.6"))
    for exe in filter(None, found):
        try:
            r = subprocess.run(
                [exe, "-c", "import sys; print(sys.version_info[:2] == (3, 6))"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if r.stdout.strip() == "True":
            return exe
    return None


INTERPRETERS = ["this-python", "python3.6"]


def interpreter(which: str) -> str:
    """The executable for an INTERPRETERS id; skips the test when 3.6 is not installed."""
    if which == "this-python":
        return sys.executable
    exe = python36()
    if exe is None:
        pytest.skip("no working Python 3.6 (python3.6 on PATH, ~/.pyenv/versions/3.6*)")
    return exe


@pytest.fixture(params=INTERPRETERS)
def python(request: pytest.FixtureRequest) -> str:
    return interpreter(request.param)


@pytest.fixture(params=["gnu-tar", "tarfile"])
def gnu(request: pytest.FixtureRequest) -> bool:
    """Which producer iter_tar_chunks uses: GNU tar (True) or Python's tarfile (False)."""
    if request.param == "tarfile":
        return False
    out = subprocess.run(["tar", "--version"], capture_output=True, text=True).stdout
    if "GNU tar" not in out:
        pytest.skip("no GNU tar on PATH")
    return True


@dataclass
class Box:
    """tmp dir holding PARTIAL (empty, as the upload script makes it) and a sentinel."""

    root: Path
    partial: Path

    def untouched(self) -> bool:
        names = sorted(p.name for p in self.root.iterdir())
        sentinel = (self.root / "sentinel").read_bytes()
        return names == ["partial", "sentinel"] and sentinel == SENTINEL


def make_box(tmp_path: Path) -> Box:
    root = tmp_path / "box"
    root.mkdir()
    (root / "sentinel").write_bytes(SENTINEL)
    (root / "partial").mkdir()
    return Box(root, root / "partial")


@pytest.fixture
def box(tmp_path: Path) -> Box:
    return make_box(tmp_path)


def receive(python: str, partial: Path, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    argv = [python, "-c", receiver_source(), str(partial)]
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=60, text=False)


def framed(archive: bytes, manifest: bytes, count: int | None = None, pad: int = 1024) -> bytes:
    n = manifest.count(b"\n") if count is None else count
    return archive + b"\0" * pad + manifest + b"#end %d\n" % n


def tree_stream(src: Path, gnu: bool) -> tuple[bytes, bytes]:
    """(archive, manifest text) exactly as ssh_upload produces them for ``src``."""
    tree = enumerate_tree(src, allow_empty=True)
    archive = b"".join(iter_tar_chunks(tree, use_system_tar=gnu))
    manifest = manifest_of_files((f.rel, f.path) for f in tree.files).to_bytes()
    return archive, manifest


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hand_archive(members: Iterable[tarfile.TarInfo | tuple[str, bytes]], fmt: int) -> bytes:
    """A tar archive of crafted members: TarInfo as is, (name, data) as regular files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tar.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size, info.mode, info.mtime = len(m[1]), 0o644, 1_600_000_000
                tar.addfile(info, io.BytesIO(m[1]))
    return buf.getvalue()


def hand_manifest(files: Iterable[tuple[str, bytes]]) -> bytes:
    return Manifest.of(ManifestEntry(n, len(d), sha(d)) for n, d in files).to_bytes()


def special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.devmajor, info.devminor = kind, linkname, 1, 3
    return info


# ---------------------------------------------------------------- faithful transfers


def test_odd_case_round_trips(python: str, gnu: bool, box: Box, tmp_path: Path) -> None:
    src = make_case(tmp_path / "case")
    archive, manifest = tree_stream(src, gnu)
    r = receive(python, box.partial, framed(archive, manifest))
    assert (r.returncode, r.stderr) == (0, b"")
    assert sha_tree(box.partial) == sha_tree(src)
    assert len(sha_tree(src)) == 19  # the comparison is not vacuous
    assert (box.partial / "empty_dir").is_dir()
    assert not (box.partial / "link_to_plan").is_symlink()  # the in-case link became a file
    assert box.untouched()


def test_long_names_round_trip(python: str, gnu: bool, box: Box, tmp_path: Path) -> None:
    src = tmp_path / "case"
    deep = src.joinpath(*[f"{i}_" + "d" * 60 for i in range(5)])  # > 255 bytes
    deep.mkdir(parents=True)
    (src / ("long_" + "n" * 140)).write_bytes(b"long")
    (deep / ("f" * 120)).write_bytes(b"deep")
    (deep / "short").write_bytes(b"short")
    archive, manifest = tree_stream(src, gnu)
    assert (b"././@LongLink" if gnu else b" path=") in archive  # the long-name mechanism
    r = receive(python, box.partial, framed(archive, manifest))
    assert (r.returncode, r.stderr) == (0, b"")
    assert sha_tree(box.partial) == sha_tree(src)
    assert len(str((deep / ("f" * 120)).relative_to(src))) > 255


def test_ustar_prefix_field_names_the_parent(python: str, box: Box) -> None:
    name = "p" * 90 + "/" + "q" * 50 + "/" + "file_" + "r" * 80  # 226 bytes: prefix + name
    archive = hand_archive([(name, b"prefixed")], tarfile.USTAR_FORMAT)
    assert archive[345:346] == b"p" and archive[257:263] == b"ustar\x00"
    r = receive(python, box.partial, framed(archive, hand_manifest([(name, b"prefixed")])))
    assert (r.returncode, r.stderr) == (0, b"")
    assert (box.partial / name).read_bytes() == b"prefixed"


def test_modes_and_mtimes_are_restored(python: str, gnu: bool, box: Box, tmp_path: Path) -> None:
    src = tmp_path / "case"
    (src / "bin").mkdir(parents=True)
    for name, mode in [("bin/run.sh", 0o755), ("data", 0o644), ("ro", 0o444)]:
        (src / name).write_bytes(name.encode())
        (src / name).chmod(mode)
        os.utime(src / name, ns=(0, 1_500_000_000_250_000_000))
    (src / "bin").chmod(0o750)
    umask = os.umask(0o022)
    os.umask(umask)
    archive, manifest = tree_stream(src, gnu)
    r = receive(python, box.partial, framed(archive, manifest))
    assert (r.returncode, r.stderr) == (0, b"")
    got = {n: (box.partial / n).stat() for n in ["bin/run.sh", "data", "ro", "bin"]}
    assert got["bin/run.sh"].st_mode & 0o777 == 0o755 & ~umask
    assert os.access(box.partial / "bin/run.sh", os.X_OK)
    assert got["data"].st_mode & 0o777 == 0o644 & ~umask
    assert got["ro"].st_mode & 0o777 == 0o444 & ~umask
    assert got["bin"].st_mode & 0o777 == 0o750 & ~umask
    assert {int(got[n].st_mtime) for n in ["bin/run.sh", "data", "ro"]} == {1_500_000_000}


@pytest.mark.parametrize("gnu", ["gnu-tar", "tarfile"], indirect=True)
def test_pre_1970_mtime_is_kept(gnu: bool, box: Box, tmp_path: Path) -> None:
    src = tmp_path / "case"
    src.mkdir()
    (src / "old.dcm").write_bytes(b"scanned long ago")
    os.utime(src / "old.dcm", (-86_400, -86_400))  # 1969-12-31
    archive, manifest = tree_stream(src, gnu)
    r = receive(sys.executable, box.partial, framed(archive, manifest))
    assert (r.returncode, r.stderr) == (0, b"")
    assert int((box.partial / "old.dcm").stat().st_mtime) == -86_400


def test_hard_links_arrive_as_independent_files(
    python: str, gnu: bool, box: Box, tmp_path: Path
) -> None:
    src = tmp_path / "case"
    src.mkdir()
    (src / "a").write_bytes(b"shared bytes" * 100)
    os.link(src / "a", src / "b")
    archive, manifest = tree_stream(src, gnu)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert [(m.name, m.isreg()) for m in tar.getmembers()] == [("./a", True), ("./b", True)]
    r = receive(python, box.partial, framed(archive, manifest))
    assert (r.returncode, r.stderr) == (0, b"")
    a, b = (box.partial / "a").stat(), (box.partial / "b").stat()
    assert a.st_ino != b.st_ino and (a.st_nlink, b.st_nlink) == (1, 1)
    assert sha_tree(box.partial) == sha_tree(src)


def test_gnu_base256_size_field_is_read(python: str, box: Box) -> None:
    archive = bytearray(hand_archive([("f", b"12345")], tarfile.GNU_FORMAT))
    archive[124:136] = b"\x80" + (5).to_bytes(11, "big")  # how GNU tar writes >= 8 GiB
    archive[148:156] = b"%06o\0 " % sum(archive[:148] + b" " * 8 + archive[156:512])
    r = receive(python, box.partial, framed(bytes(archive), hand_manifest([("f", b"12345")])))
    assert (r.returncode, r.stderr) == (0, b"")
    assert (box.partial / "f").read_bytes() == b"12345"


def test_empty_tree_with_empty_manifest_is_accepted(python: str, box: Box) -> None:
    archive = hand_archive([special("only_dir", tarfile.DIRTYPE)], tarfile.GNU_FORMAT)
    r = receive(python, box.partial, framed(archive, b""))
    assert (r.returncode, r.stderr) == (0, b"")
    assert [p.name for p in box.partial.iterdir()] == ["only_dir"]
