"""The pure half of compressed uploads: the choice, the codecs, the sample."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import zstandard

from mqi_communicator.remote.transfer.compression import (
    CodecMeasure,
    choose_codec,
    compressed,
    make_compressor,
    sample_case,
)
from mqi_communicator.remote.transfer.tarstream import enumerate_tree

CT = CodecMeasure("zstd", ratio=0.4, compress_bps=250e6, decompress_bps=500e6)
RANDOM = CodecMeasure("zstd", ratio=1.0, compress_bps=800e6, decompress_bps=2e9)
GB = 10**9


def test_slow_link_and_compressible_case_compress() -> None:
    codec, raw, est = choose_codec(GB, 12.5e6, [CT])
    assert codec == "zstd" and est < raw / 2


def test_fast_link_stays_uncompressed() -> None:
    assert choose_codec(GB, 300e6, [CT])[0] == "off"
    assert choose_codec(GB, 125e6, [CT])[0] == "off"  # 1 Gbit/s: sum is not below 0.8x


def test_incompressible_case_stays_uncompressed_even_on_a_slow_link() -> None:
    assert choose_codec(GB, 1e6, [RANDOM])[0] == "off"


def test_slower_codec_loses_to_a_faster_one() -> None:
    zlib_m = CodecMeasure("zlib", ratio=0.38, compress_bps=40e6, decompress_bps=200e6)
    assert choose_codec(GB, 12.5e6, [zlib_m, CT])[0] == "zstd"


def test_codecs_round_trip() -> None:
    data = [os.urandom(1000) + b"\0" * 100_000 for _ in range(5)]
    for codec, unpack in (
        ("zstd", lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b)),
        ("zlib", zlib.decompress),
    ):
        comp = make_compressor(codec)  # type: ignore[arg-type]
        assert comp is not None
        assert unpack(b"".join(compressed(iter(data), comp))) == b"".join(data)
    assert make_compressor("off") is None


def test_sample_spreads_over_the_tree(tmp_path: Path) -> None:
    for i in range(40):
        (tmp_path / f"f{i:02d}").write_bytes(bytes([i]) * 300)
    (tmp_path / "empty").write_bytes(b"")
    sample = sample_case(enumerate_tree(tmp_path))
    assert len(sample) == 8 * 300 and len(set(sample)) == 8
