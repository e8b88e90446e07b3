"""Which codec one SSH upload uses: the measurements of compression.py, cached per host.

One :class:`CodecChooser` lives in each ``SshTransport``. The link probe
(:mod:`~mqi_communicator.remote.transfer.link_probe`) runs at most once per connection and
:data:`PROBE_TTL_S` (links change, but not from one case to the next); the codec
sample is taken from every case, since cases differ.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import paramiko

from mqi_communicator.errors import TransferError
from mqi_communicator.remote.quoting import render_command
from mqi_communicator.remote.transfer.compression import (
    MIN_BYTES,
    Codec,
    CodecMeasure,
    Setting,
    choose_codec,
    local_zstd,
    measure_codecs,
    sample_case,
)
from mqi_communicator.remote.transfer.link_probe import LinkProbe, probe_link, probe_script
from mqi_communicator.remote.transfer.tarstream import CaseTree

__all__ = ["PROBE_TTL_S", "CodecChoice", "CodecChooser"]

log = logging.getLogger(__name__)

PROBE_TTL_S = 600.0


@dataclass(frozen=True)
class CodecChoice:
    """What an upload will use, and the figures it was chosen by (for logs and benches)."""

    codec: Codec
    zstd: str | None
    link_bps: float | None = None
    measures: tuple[CodecMeasure, ...] = ()
    estimate_raw_s: float | None = None
    estimate_s: float | None = None


_OFF = CodecChoice("off", None)


class CodecChooser:
    """Decides each upload's codec for one host (thread-safe)."""

    def __init__(self, setting: Setting = "auto") -> None:
        self.setting: Setting = setting
        self._lock = threading.Lock()
        self._probe: tuple[paramiko.Transport, LinkProbe] | None = None
        #: The last decision (benchmarks and tests read it).
        self.last: CodecChoice = _OFF

    def _link(self, transport: paramiko.Transport, env: Mapping[str, str], where: str) -> LinkProbe:
        with self._lock:
            known = self._probe
        if (
            known is not None
            and known[0] is transport
            and time.monotonic() - known[1].at < PROBE_TTL_S
        ):
            return known[1]
        found = probe_link(transport, render_command(probe_script(), env), where=where)
        with self._lock:
            self._probe = (transport, found)
        return found

    def choose(
        self,
        transport: paramiko.Transport,
        tree: CaseTree,
        *,
        env: Mapping[str, str],
        where: str,
        far_python: bool,
    ) -> CodecChoice:
        """The codec for sending ``tree`` (``off`` without far-side python3).

        Raises:
            HostUnreachableError: the link probe lost the connection.
        """
        choice = self._decide(transport, tree, env, where, far_python)
        self.last = choice
        return choice

    def _decide(
        self,
        transport: paramiko.Transport,
        tree: CaseTree,
        env: Mapping[str, str],
        where: str,
        far_python: bool,
    ) -> CodecChoice:
        if not far_python or self.setting == "off":
            return _OFF
        if self.setting == "auto" and tree.total_bytes < MIN_BYTES:
            return _OFF
        try:
            link = self._link(transport, env, where)
        except TransferError as err:
            log.warning("%s: link probe failed (%s); sending uncompressed", where, err)
            return _OFF
        both_zstd = link.zstd is not None and local_zstd()
        if self.setting != "auto":
            codec: Codec = "zstd" if self.setting == "zstd" and both_zstd else "zlib"
            return CodecChoice(codec, link.zstd, link.link_bps)
        try:
            sample = sample_case(tree)
        except OSError:
            return _OFF  # the stream itself will report the unreadable file
        measures = tuple(measure_codecs(sample, ["zstd"] if both_zstd else ["zlib"]))
        codec, raw_s, est_s = choose_codec(tree.total_bytes, link.link_bps, measures)
        choice = CodecChoice(codec, link.zstd, link.link_bps, measures, raw_s, est_s)
        log.info(
            "%s: upload of %.0f MB: link %.1f MB/s, %s -> %s (estimated %.1f s, raw %.1f s)",
            where,
            tree.total_bytes / 1e6,
            link.link_bps / 1e6,
            ", ".join(f"{m.codec} ratio {m.ratio:.2f}" for m in measures) or "no sample",
            codec,
            est_s,
            raw_s,
        )
        return choice
