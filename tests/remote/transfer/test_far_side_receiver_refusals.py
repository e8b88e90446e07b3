"""far_side_receiver.py refusing what it must: exit 21 for archives it cannot or must not
extract (or cannot write), exit 22 when the manifest or its trailer does not match.

Runs the receiver as the far side does; helpers and the interpreter/box fixtures come
from test_far_side_receiver.py. On a refusal the calling shell removes PARTIAL, so these
tests check the exit code, the message, and that nothing appeared outside PARTIAL.
"""

from __future__ import annotations

import random
import shutil
import tarfile
from pathlib import Path

import pytest

from tests.infra.tmpfs import small_tmpfs
from tests.remote.transfer.test_far_side_receiver import (
    INTERPRETERS,
    Box,
    framed,
    hand_archive,
    hand_manifest,
    interpreter,
    make_box,
    receive,
    special,
)


@pytest.fixture(params=INTERPRETERS)
def python(request: pytest.FixtureRequest) -> str:
    return interpreter(request.param)


@pytest.fixture
def box(tmp_path: Path) -> Box:
    return make_box(tmp_path)


# ---------------------------------------------------------------- refused archives (21)

PAYLOAD = ("payload", b"after the bad member")


def refused_member(kind: str, box: Box) -> tarfile.TarInfo | tuple[str, bytes]:
    outside = str(box.root / "sentinel")
    members: dict[str, tarfile.TarInfo | tuple[str, bytes]] = {
        "symlink": special("evil", tarfile.SYMTYPE, outside),
        "hardlink": special("evil", tarfile.LNKTYPE, outside),
        "chardev": special("null", tarfile.CHRTYPE),
        "blockdev": special("disk", tarfile.BLKTYPE),
        "fifo": special("pipe", tarfile.FIFOTYPE),
        "dotdot": ("../escape", b"escaped"),
        "inner-dotdot": ("sub/../../escape", b"escaped"),
        "long-dotdot": ("../" + "e" * 150, b"escaped"),
        "absolute": (str(box.root / "abs_escape"), b"escaped"),
    }
    return members[kind]


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT], ids=["gnu", "pax"])
@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("symlink", "unsupported member type b'2'"),
        ("hardlink", "unsupported member type b'1'"),
        ("chardev", "unsupported member type b'3'"),
        ("blockdev", "unsupported member type b'4'"),
        ("fifo", "unsupported member type b'6'"),
        ("dotdot", "unsafe member name"),
        ("inner-dotdot", "unsafe member name"),
        ("long-dotdot", "unsafe member name"),
        ("absolute", "unsafe member name"),
    ],
)
def test_member_is_refused(python: str, box: Box, kind: str, message: str, fmt: int) -> None:
    member = refused_member(kind, box)
    # the same name again as a regular file: what a followed link would write through
    again = (member.name if isinstance(member, tarfile.TarInfo) else member[0], b"pwned")
    archive = hand_archive([PAYLOAD, member, again], fmt)
    r = receive(python, box.partial, framed(archive, hand_manifest([PAYLOAD, again])))
    assert r.returncode == 21, r.stderr
    assert b"refused archive: " + message.encode() in r.stderr
    assert box.untouched()
    assert not [p for p in box.partial.rglob("*") if p.is_symlink() or not p.is_file()]


def test_duplicate_file_member_is_refused(python: str, box: Box) -> None:
    archive = hand_archive([("dup", b"first"), ("dup", b"second")], tarfile.GNU_FORMAT)
    r = receive(python, box.partial, framed(archive, hand_manifest([("dup", b"second")])))
    assert r.returncode == 21
    assert b"duplicate member" in r.stderr
    assert (box.partial / "dup").read_bytes() == b"first"  # never overwritten
    assert box.untouched()


@pytest.mark.parametrize("where", ["name-byte", "checksum-digits"])
def test_corrupted_header_checksum_is_refused(python: str, box: Box, where: str) -> None:
    files = [("a", b"x" * 600), ("b", b"second")]
    archive = bytearray(hand_archive(files, tarfile.GNU_FORMAT))
    second = 512 + 1024  # header, then 600 bytes padded to two blocks
    assert archive[second : second + 2] == b"b\0"
    if where == "name-byte":
        archive[second] = ord("c")
    else:
        field = slice(second + 148, second + 154)  # six octal digits, then NUL space
        archive[field] = b"%06o" % (int(archive[field], 8) ^ 1)
    r = receive(python, box.partial, framed(bytes(archive), hand_manifest(files)))
    assert r.returncode == 21
    assert b"checksum mismatch" in r.stderr
    assert sorted(p.name for p in box.partial.iterdir()) == ["a"]
    assert box.untouched()


def test_garbage_is_refused(python: str, box: Box) -> None:
    garbage = random.Random(3).randbytes(20_000)
    r = receive(python, box.partial, framed(garbage, b""))
    assert r.returncode == 21
    assert b"refused archive" in r.stderr
    assert box.untouched()


@pytest.mark.parametrize(
    "cut",
    [512 + 5000, 512 + 10_240 + 100, 0, 300],
    ids=["mid-data", "mid-second-header", "empty", "mid-first-header"],
)
def test_truncated_archive_is_refused(python: str, box: Box, cut: int) -> None:
    files = [("big", random.Random(5).randbytes(10_000)), ("small", b"s")]
    archive = hand_archive(files, tarfile.PAX_FORMAT)
    r = receive(python, box.partial, archive[:cut])
    assert r.returncode == 21
    assert b"truncated" in r.stderr
    assert box.untouched()


def test_full_disk_is_a_write_failure(python: str, tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "small") as mnt:
        (mnt / "partial").mkdir()
        files = [(f"f{i}", random.Random(i).randbytes(600_000)) for i in range(3)]
        archive = hand_archive(files, tarfile.GNU_FORMAT)
        r = receive(python, mnt / "partial", framed(archive, hand_manifest(files)))
        assert r.returncode == 21
        assert b"writing the upload failed" in r.stderr
        assert b"No space left" in r.stderr


# ---------------------------------------------------------------- manifest problems (22)

FILES = [("a", b"alpha"), ("back\\slash", b"bs"), ("new\nline", b"nl"), ("z", b"")]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("digest", "digest differs: a"),
        ("unlisted", "unexpected: z"),
        ("extra", "missing: ghost"),
        ("reordered", "manifest text differs (ordering or format)"),
        ("unescaped", "manifest text differs (ordering or format)"),
    ],
)
def test_manifest_mismatch(python: str, box: Box, change: str, message: str) -> None:
    archive = hand_archive(FILES, tarfile.PAX_FORMAT)
    manifest = hand_manifest(FILES)
    assert receive(python, box.partial, framed(archive, manifest)).returncode == 0  # control
    shutil.rmtree(box.partial)
    box.partial.mkdir()
    lines = manifest.splitlines(keepends=True)
    if change == "digest":
        manifest = hand_manifest([("a", b"ALPHA"), *FILES[1:]])
    elif change == "unlisted":
        manifest = hand_manifest(FILES[:-1])
    elif change == "extra":
        manifest = hand_manifest([*FILES, ("ghost", b"boo")])
    elif change == "reordered":
        manifest = b"".join([lines[1], lines[0], *lines[2:]])
    else:  # "\\" + digest + "  back\\\\slash" written the plain way instead
        manifest = b"".join([lines[0], lines[1][1:].replace(b"\\\\", b"\\"), *lines[2:]])
    r = receive(python, box.partial, framed(archive, manifest))
    assert r.returncode == 22, r.stderr
    assert b"sha256 verification failed" in r.stderr
    assert message.encode() in r.stderr


@pytest.mark.parametrize("ending", ["no-trailer", "count+1", "count-1", "no-newline", "nothing"])
def test_unfinished_sender_is_a_mismatch(python: str, box: Box, ending: str) -> None:
    archive = hand_archive(FILES, tarfile.GNU_FORMAT)
    manifest = hand_manifest(FILES)
    stdin = {
        "no-trailer": archive + manifest,
        "count+1": framed(archive, manifest, count=len(FILES) + 1),
        "count-1": framed(archive, manifest, count=len(FILES) - 1),
        "no-newline": framed(archive, manifest)[:-1],
        "nothing": archive,
    }[ending]
    r = receive(python, box.partial, stdin)
    assert r.returncode == 22, r.stderr
    assert b"did not finish (no manifest trailer)" in r.stderr
    assert box.untouched()
