"""Compressing an upload's stream when it pays, chosen by measurement.

An upload is worth compressing when the link is slow and the case compresses well
(a CT series is mostly 16-bit air and water); on a fast link (loopback, 10 GbE)
compressing only adds CPU time. Nobody should have to know which, so the sender
measures both things before it sends:

- the link: the raw-byte rate of the SSH pipe to the far side
  (:mod:`~mqi_communicator.remote.transfer.link_probe`, cached per connection);
- the case: each codec's ratio and speed on a sample of the case's own bytes
  (:func:`measure_codecs`, a few MiB read from files spread over the tree).

:func:`choose_codec` (pure) then estimates the time of each way. The estimate adds
compression, transfer and decompression times although they overlap in practice,
so it only compresses when that clearly wins (:data:`PAYS`); on loopback it picks
``off``, which is exactly today's stream.

Codecs: ``zstd`` (level 1) when both sides have it (here the ``zstandard`` package,
there the ``zstd`` binary), else ``zlib`` (level 1) decompressed by the far side's
python3. The whole stdin of the one-command protocol is compressed (archive,
manifest, trailer), so the far side's framing and verification are unchanged: it
hashes the DECOMPRESSED bytes, and a corrupted stream fails decompression or
verification. Only the one-command protocol compresses (it needs python3 there).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from mqi_communicator.remote.transfer.tarstream import CaseTree

__all__ = [
    "CODECS",
    "MIN_BYTES",
    "PAYS",
    "Codec",
    "CodecMeasure",
    "Compressor",
    "Setting",
    "choose_codec",
    "compressed",
    "local_zstd",
    "make_compressor",
    "measure_codecs",
    "sample_case",
]

Codec = Literal["off", "zstd", "zlib"]
#: ``auto`` measures and decides; the others force a codec (operators, benchmarks).
Setting = Literal["auto", "off", "zstd", "zlib"]
CODECS: tuple[Codec, ...] = ("zstd", "zlib")

#: Compress only when the estimate is below this fraction of the uncompressed one:
#: the estimate is crude (a sample, a short probe), and "off" is never worse than today.
PAYS = 0.8
#: Cases smaller than this are sent as they are: probing would cost more than it saves.
MIN_BYTES = 8 << 20
_LEVEL = 1
_SAMPLE_FILES = 8
_SAMPLE_PIECE = 1 << 20


class Compressor(Protocol):
    """A streaming compressor (zlib's ``compressobj`` shape)."""

    def compress(self, data: bytes, /) -> bytes: ...
    def flush(self) -> bytes: ...


@dataclass(frozen=True)
class CodecMeasure:
    """One codec on the sample: compressed/raw size, and raw bytes per second each way."""

    codec: Codec
    ratio: float
    compress_bps: float
    decompress_bps: float


def local_zstd() -> bool:
    """True when the ``zstandard`` package can be imported here."""
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return False
    return True


class _Zstd:
    def __init__(self) -> None:
        import zstandard

        # One frame with a content checksum: a corrupted stream fails on the far side.
        params = zstandard.ZstdCompressionParameters.from_level(_LEVEL, write_checksum=True)
        self._obj = zstandard.ZstdCompressor(compression_params=params).compressobj()

    def compress(self, data: bytes, /) -> bytes:
        return self._obj.compress(data)

    def flush(self) -> bytes:
        return self._obj.flush()


def make_compressor(codec: Codec) -> Compressor | None:
    """A fresh compressor for ``codec`` (None for ``off``)."""
    if codec == "zstd":
        return _Zstd()
    if codec == "zlib":
        return zlib.compressobj(_LEVEL)
    return None


def _decompress(codec: Codec, data: bytes) -> bytes:
    if codec == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return zlib.decompress(data)


def compressed(chunks: Iterator[bytes], comp: Compressor) -> Iterator[bytes]:
    """``chunks`` through ``comp``, skipping empty outputs; flushed at the end."""
    for chunk in chunks:
        out = comp.compress(chunk)
        if out:
            yield out
    tail = comp.flush()
    if tail:
        yield tail


def sample_case(tree: CaseTree, limit: int = _SAMPLE_FILES * _SAMPLE_PIECE) -> bytes:
    """Up to ``limit`` bytes: the first MiB of files spread evenly over the tree.

    Raises:
        OSError: a file could not be read.
    """
    files = [f for f in tree.files if f.size]
    if not files:
        return b""
    count = min(len(files), max(1, limit // _SAMPLE_PIECE))
    picks = [files[i * len(files) // count] for i in range(count)]
    parts = []
    for f in picks:
        with f.path.open("rb") as fh:
            parts.append(fh.read(_SAMPLE_PIECE))
    return b"".join(parts)


def measure_codecs(
    sample: bytes,
    codecs: Sequence[Codec],
    clock: Callable[[], float] = time.perf_counter,
) -> list[CodecMeasure]:
    """Compress and decompress ``sample`` with each codec; time and size each."""
    out: list[CodecMeasure] = []
    if not sample:
        return out
    for codec in codecs:
        comp = make_compressor(codec)
        assert comp is not None
        t0 = clock()
        packed = comp.compress(sample) + comp.flush()
        t1 = clock()
        _decompress(codec, packed)
        t2 = clock()
        out.append(
            CodecMeasure(
                codec,
                ratio=len(packed) / len(sample),
                compress_bps=len(sample) / max(t1 - t0, 1e-6),
                decompress_bps=len(sample) / max(t2 - t1, 1e-6),
            )
        )
    return out


def estimate_seconds(nbytes: int, link_bps: float, measure: CodecMeasure | None) -> float:
    """Seconds to send ``nbytes`` raw (``measure`` None) or through a codec.

    Conservatively the SUM of compressing, sending and decompressing (they overlap).
    """
    if measure is None:
        return nbytes / link_bps
    return nbytes * (
        1 / measure.compress_bps + measure.ratio / link_bps + 1 / measure.decompress_bps
    )


def choose_codec(
    nbytes: int, link_bps: float, measures: Sequence[CodecMeasure]
) -> tuple[Codec, float, float]:
    """The codec to send ``nbytes`` with; also the estimated seconds raw and chosen."""
    raw = estimate_seconds(nbytes, link_bps, None)
    best: tuple[Codec, float] = ("off", raw)
    for m in measures:
        est = estimate_seconds(nbytes, link_bps, m)
        if est < PAYS * raw and est < best[1]:
            best = (m.codec, est)
    return best[0], raw, best[1]
