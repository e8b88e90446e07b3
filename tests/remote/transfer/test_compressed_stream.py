"""far_side_receiver.py fed corrupted compressed streams (``PARTIAL zlib`` / ``PARTIAL zstd``).

A flipped bit in a compressed stream does one of two things: the stream decodes to
other bytes (the receiver must refuse it with one line), or to the very same bytes (a
back-reference re-pointed to equal bytes, padding bits after the last block), which is
harmless and rightly accepted. So the property checked over every kind of position
(header, body, end of data, checksum, data after the end, truncation) is: refused, or
accepted with exactly the tree, modes and times of the clean stream.

zlib's adler32 does not tell all other bytes apart: a re-pointed back-reference that turns
"0770" into "7007" keeps both its sums (and the tar header's), so a mode changes unseen
unless the stream's own sha256 is checked; the hand-made stream below does exactly that.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from mqi_communicator.remote.transfer.compression import Codec, make_compressor
from mqi_communicator.remote.transfer.far_side_receiver import trailer
from mqi_communicator.remote.transfer.far_side_scripts import receiver_source
from tests.infra.require import unavailable
from tests.remote.transfer.test_far_side_receiver import tree_stream

Snapshot = dict[str, tuple[int, int, str]]


def small_case(root: Path, sizes: tuple[int, ...] = (3000, 3000, 3000)) -> Path:
    """Low-entropy files (many back-references), modes that differ, fixed times."""
    (root / "CT").mkdir(parents=True)
    for i, size in enumerate(sizes):
        body = bytes((i * 7 + j * j) % 5 if j % 3 else 0 for j in range(size))
        (root / "CT" / f"s{i}.dcm").write_bytes(body)
    (root / "plan.txt").write_bytes(b"plan\n" * 50)
    os.chmod(root / "plan.txt", 0o750)
    for p in [*root.rglob("*"), root]:
        os.utime(p, (1e9, 1e9))
    return root


def framed_digest(archive: bytes, manifest: bytes) -> bytes:
    """The uncompressed stdin of a compressed upload, as ssh_upload sends it."""
    before = archive + manifest
    return before + trailer(manifest.count(b"\n"), hashlib.sha256(before).hexdigest())


def zstd_binary() -> str:
    found = shutil.which("zstd")
    if found is None:
        unavailable("zstd", "no zstd on PATH")
    assert found is not None
    return found


def receive(stream: bytes, codec: Codec, partial: Path) -> subprocess.CompletedProcess[bytes]:
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    argv = [sys.executable, "-c", receiver_source(), str(partial), codec]
    argv += [zstd_binary()] if codec == "zstd" else []
    return subprocess.run(argv, input=stream, capture_output=True, timeout=60)


def snapshot(root: Path) -> Snapshot:
    """Every entry's mode, mtime and (files) sha256: what an accepted upload must match."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.stat()
        rel = p.relative_to(root).as_posix()
        if p.is_file():
            out[rel] = (st.st_mode, int(st.st_mtime), hashlib.sha256(p.read_bytes()).hexdigest())
        else:  # the receiver does not restore directory times
            out[rel] = (st.st_mode, 0, "dir")
    return out


def flipped(data: bytes, pos: int, bit: int) -> bytes:
    out = bytearray(data)
    out[pos] ^= 1 << bit
    return bytes(out)


def spoilt_streams(codec: Codec, clean: bytes) -> dict[str, list[bytes]]:
    """Corrupted variants of ``clean`` by the kind of position they touch."""
    n = len(clean)
    head = 2 if codec == "zlib" else 6  # zlib CMF/FLG; zstd magic, descriptor, window
    tail = 4  # adler32 / zstd content checksum
    some_bits = {
        "header": range(head),
        "first block": range(head, head + 3),
        "end of data": range(n - tail - 4, n - tail),
        "checksum": range(n - tail, n),
    }
    out = {
        kind: [flipped(clean, p, b) for p in ps for b in (0, 5, 7)]
        for kind, ps in some_bits.items()
    }
    step = (n - tail - head - 7) // 16
    out["body"] = [flipped(clean, p, 6) for p in range(head + 3, n - tail - 4, step)]
    again = make_compressor(codec)
    assert again is not None
    out["after the end"] = [
        clean + b"\0",
        clean + b"garbage",
        clean + again.compress(b"x") + again.flush(),
    ]
    out["truncated"] = [clean[:-1], clean[: n // 2], clean[:head]]
    return out


@pytest.mark.parametrize("codec", ["zlib", "zstd"])
def test_every_corruption_is_refused_or_decodes_to_the_same_bytes(
    tmp_path: Path, codec: Codec
) -> None:
    archive, manifest = tree_stream(small_case(tmp_path / "src"), gnu=False)
    comp = make_compressor(codec)
    assert comp is not None
    clean = comp.compress(framed_digest(archive, manifest)) + comp.flush()
    partial = tmp_path / "partial"
    r = receive(clean, codec, partial)
    assert r.returncode == 0, r.stderr
    want = snapshot(partial)
    assert len(want) == 5
    refused = accepted = 0
    for kind, streams in spoilt_streams(codec, clean).items():
        for i, stream in enumerate(streams):
            r = receive(stream, codec, partial)
            what = f"{kind} #{i}: exit {r.returncode}, {r.stderr!r}"
            if r.returncode == 0:
                accepted += 1
                assert snapshot(partial) == want, what  # harmless: the very same bytes
            else:
                refused += 1
                lines = r.stderr.decode().splitlines()
                assert len(lines) == 1 and lines[0].startswith("mqi-upload: "), what
    assert refused > 40, (refused, accepted)


class _BitWriter:
    """Deflate's bit order: fields LSB first, Huffman codes MSB first."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def put(self, value: int, count: int) -> None:
        self.bits += [(value >> i) & 1 for i in range(count)]

    def code(self, code: int, length: int) -> None:
        self.bits += [(code >> i) & 1 for i in reversed(range(length))]

    def symbol(self, v: int) -> None:  # the fixed Huffman code (RFC 1951, 3.2.6)
        if v < 144:
            self.code(0x30 + v, 8)
        elif v < 256:
            self.code(0x190 + v - 144, 9)
        elif v < 280:
            self.code(v - 256, 7)
        else:
            self.code(0xC0 + v - 280, 8)

    def data(self) -> bytes:
        padded = self.bits + [0] * (-len(self.bits) % 8)
        return bytes(
            sum(b << i for i, b in enumerate(padded[k : k + 8])) for k in range(0, len(padded), 8)
        )


def zlib_with_one_match(raw: bytes, at: int) -> tuple[bytes, int]:
    """``raw`` as literals, but its 4 bytes at ``at`` copied from 2049 bytes back.

    Returns the zlib stream and the position of the bit that makes that distance 2561
    (distance code 22: base 2049 and 10 extra bits, of which this is the highest).
    """
    w = _BitWriter()
    w.put(1, 1)  # final block
    w.put(1, 2)  # fixed Huffman codes
    i, flip = 0, -1
    while i < len(raw):
        if i == at:
            w.symbol(258)  # length 4
            w.code(22, 5)
            flip = len(w.bits) + 9
            w.put(0, 10)
            i += 4
        else:
            w.symbol(raw[i])
            i += 1
    w.symbol(256)
    return b"\x78\x01" + w.data() + zlib.adler32(raw).to_bytes(4, "big"), 16 + flip


def test_zlib_bit_flip_that_keeps_adler32_changes_a_mode_and_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "b.txt").write_bytes(b"secret\n")
    os.chmod(src / "b.txt", 0o770)

    def build(filler: bytes) -> tuple[bytes, int]:
        (src / "a.bin").write_bytes(filler)
        for p in [src / "a.bin", src / "b.txt", src]:
            os.utime(p, (1e9, 1e9))
        raw = framed_digest(*tree_stream(src, gnu=False))
        header = raw.index(b"b.txt\0") // 512 * 512
        assert raw[header + 100 : header + 108] == b"0000770\0"
        return raw, header + 103  # its "0770"

    raw, at = build(b"x" * 4096)
    filler = bytearray(b"x" * 4096)
    start = raw.index(bytes(filler))
    filler[at - 2049 - start : at - 2045 - start] = b"0770"  # where the match points
    filler[at - 2561 - start : at - 2557 - start] = b"7007"  # where one flipped bit points
    raw, at = build(bytes(filler))
    clean, bit = zlib_with_one_match(raw, at)
    dirty = flipped(clean, bit // 8, bit % 8)
    # the premise: zlib alone accepts it, decoded to other bytes
    decoded = zlib.decompress(dirty)
    assert decoded != raw and decoded.replace(b"0007007\0", b"0000770\0") == raw

    ok = receive(clean, "zlib", tmp_path / "clean")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "clean" / "b.txt").stat().st_mode & 0o777 == 0o770 & ~current_umask()
    bad = receive(dirty, "zlib", tmp_path / "dirty")
    assert bad.returncode == 21, (bad.returncode, bad.stderr)
    assert bad.stderr.decode().splitlines() == [
        "mqi-upload: refused archive: compressed stream corrupted "
        "(it decodes to other bytes than were sent)"
    ]


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
