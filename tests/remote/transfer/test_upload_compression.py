"""Compressed uploads over the real loopback sshd (remote/transfer/compression.py, upload_codec.py).

A compressible case (mostly zeros and small numbers, like CT air and water) goes
through each codec and arrives byte-exact and verified; ``auto`` compresses on a
slow link (the measured rate is replaced by 1 MB/s: loopback is not slow) and not on
loopback; a far side without ``zstd`` on its PATH gets zlib; a corrupted compressed
stream fails with a clear error and leaves nothing behind.
"""

from __future__ import annotations

import os
import random
import shutil
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import zstandard

import mqi_communicator.remote.transfer.ssh_upload as ssh_upload_mod
import mqi_communicator.remote.transfer.upload_codec as upload_codec_mod
from mqi_communicator.errors import TransferError
from mqi_communicator.remote.transfer.compression import MIN_BYTES, Codec, make_compressor
from mqi_communicator.remote.transfer.link_probe import LinkProbe
from mqi_communicator.remote.transport.ssh import SshTransport
from tests.infra.sshd import SshServer, make_ssh_transport
from tests.remote.transport.test_transport_contract import make_case, no_partials, sha_tree

pytestmark = pytest.mark.ssh


def compressible_case(root: Path, nbytes: int = MIN_BYTES + (2 << 20)) -> Path:
    """The contract's awkward names plus 16-bit 'slices' of noisy water in air."""
    make_case(root)
    rng = random.Random(3)
    per = 512 * 512 * 2
    # i.i.d. bytes of low entropy (mostly 0, else one of 8 values): ratio ~0.3 as real CT
    table = bytes(0 if b < 160 else b % 8 + 1 for b in range(256))
    for i in range(nbytes // per + 1):
        data = rng.randbytes(per).translate(table)
        (root / "CT" / f"phantom_{i:03d}.dcm").write_bytes(data)
    return root


def slow_link(monkeypatch: pytest.MonkeyPatch, bps: float = 1e6) -> None:
    """Keep the real probe (it finds zstd) but report a slow link."""
    real = upload_codec_mod.probe_link

    def probe(*args: Any, **kwargs: Any) -> LinkProbe:
        return replace(real(*args, **kwargs), link_bps=bps)

    monkeypatch.setattr(upload_codec_mod, "probe_link", probe)


def upload(t: SshTransport, src: Path, dest: Path) -> Codec:
    try:
        t.upload_tree(src, str(dest))
    finally:
        t.close()
    return t.codecs.last.codec


@pytest.mark.parametrize("codec", ["zstd", "zlib"])
def test_each_codec_round_trips_byte_exact(sshd: SshServer, tmp_path: Path, codec: Codec) -> None:
    sshd.start()
    src = compressible_case(tmp_path / "case")
    dest = tmp_path / "remote" / "case"
    assert upload(make_ssh_transport(sshd, compression=codec), src, dest) == codec
    assert sha_tree(dest) == sha_tree(src)
    assert no_partials(dest.parent)


def test_auto_compresses_on_a_slow_link(
    sshd: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sshd.start()
    src = compressible_case(tmp_path / "case")
    t = make_ssh_transport(sshd)
    upload(t, src, tmp_path / "remote" / "fast")
    # loopback: the real probe measured it (the choice there is the benchmark's subject)
    assert t.codecs.last.link_bps is not None and t.codecs.last.link_bps > 5e6
    slow_link(monkeypatch)
    t = make_ssh_transport(sshd)
    assert upload(t, src, tmp_path / "remote" / "slow") == "zstd"
    assert t.codecs.last.measures[0].ratio < 0.5
    assert sha_tree(tmp_path / "remote" / "slow") == sha_tree(src)
    assert sha_tree(tmp_path / "remote" / "fast") == sha_tree(src)


def test_small_cases_are_not_probed(sshd: SshServer, tmp_path: Path) -> None:
    sshd.start()
    src = make_case(tmp_path / "case")
    t = make_ssh_transport(sshd)
    assert upload(t, src, tmp_path / "remote" / "case") == "off"
    assert t.codecs.last.link_bps is None


def test_far_side_without_zstd_gets_zlib(
    sshd: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sshd.start()
    bin_dir = tmp_path / "bin"  # a PATH with what the upload scripts use, and no zstd
    bin_dir.mkdir()
    for tool in ["sh", "head", "cat", "mkdir", "mv", "rm", "python3", "env"]:
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    src = compressible_case(tmp_path / "case")
    slow_link(monkeypatch)
    t = make_ssh_transport(sshd, env={"PATH": str(bin_dir)})
    assert upload(t, src, tmp_path / "remote" / "auto") == "zlib"
    assert t.codecs.last.zstd is None
    assert sha_tree(tmp_path / "remote" / "auto") == sha_tree(src)
    # an operator's "zstd" cannot be honoured there either: zlib
    t = make_ssh_transport(sshd, env={"PATH": str(bin_dir)}, compression="zstd")
    assert upload(t, src, tmp_path / "remote" / "forced") == "zlib"
    assert sha_tree(tmp_path / "remote" / "forced") == sha_tree(src)


def decoded(codec: Codec, stream: bytes) -> bytes | None:
    """What ``stream`` decompresses to here, or None when it does not."""
    try:
        if codec == "zstd":
            return zstandard.ZstdDecompressor().decompressobj().decompress(stream)
        return zlib.decompress(stream)
    except (zlib.error, zstandard.ZstdError):
        return None


class _Corrupting:
    """A real compressor whose stream goes out with one bit flipped past its first MiB.

    It holds the stream back until flush() to flip the first bit there that changes what
    the stream decodes to: a flip can also be harmless (a back-reference re-pointed to
    equal bytes, the same bytes arrive and are rightly accepted), and which bit is which
    depends on the stream (a bit flipped at a fixed offset passed about 1 run in 8).
    """

    def __init__(self, codec: Codec) -> None:
        inner = make_compressor(codec)
        assert inner is not None
        self._inner, self._codec = inner, codec
        self._parts: list[bytes] = []

    def compress(self, data: bytes, /) -> bytes:
        self._parts.append(self._inner.compress(data))
        return b""

    def flush(self) -> bytes:
        clean = b"".join(self._parts) + self._inner.flush()
        want = decoded(self._codec, clean)
        assert want is not None
        for at in range(1 << 20, len(clean)):
            dirty = clean[:at] + bytes([clean[at] ^ 0x40]) + clean[at + 1 :]
            if decoded(self._codec, dirty) != want:
                return dirty
        raise AssertionError("no bit past the first MiB changes the decoded stream")


@pytest.mark.parametrize("codec", ["zstd", "zlib"])
def test_corrupted_compressed_stream_fails_clearly(
    sshd: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, codec: Codec
) -> None:
    sshd.start()
    src = compressible_case(tmp_path / "case", nbytes=24 << 20)  # > 1 MiB once compressed
    for p in [*src.rglob("*"), src]:  # the same stream every run
        os.utime(p, (1e9, 1e9), follow_symlinks=False)
    monkeypatch.setattr(ssh_upload_mod, "make_compressor", _Corrupting)
    dest = tmp_path / "remote" / "case"
    with pytest.raises(TransferError) as info:
        upload(make_ssh_transport(sshd, compression=codec), src, dest)
    text = str(info.value)
    # refused in one line: by the decoder, the stream's sha256, or a tar header it garbled
    assert len(text.splitlines()) == 1 and "(exit 21): mqi-upload: refused archive: " in text, text
    assert not dest.exists() and no_partials(dest.parent)
    assert not os.listdir(dest.parent)
