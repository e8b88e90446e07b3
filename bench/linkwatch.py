"""Where the time of a throughput run goes: link bytes over time, and each case's upload.

:class:`Watch` samples, every :data:`STEP_S`, from outside the engine (it changes nothing
the engine does):

- the host end of the shaped veth's byte counters (``/sys/class/net/<if>/statistics``):
  ``tx`` is what the uploads send, ``rx`` what downloads bring back;
- the remote base folder (the "server" is this machine): a ``<dir>.partial-*`` folder
  appears when an upload's bytes start landing, ``<dir>`` when it was verified and
  renamed into place.

:func:`summary` turns that into the figures the benchmark prints: link utilisation and
idle time while uploads were still due, per-case upload spans, and the gaps between an
upload's end and its job's start and between a job's end and its completion.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

STEP_S = 0.1
_DIR = re.compile(r"^mqic_case_(\d+)_a(\d+)(\.partial-[0-9a-f]+)?$")


@dataclass
class Watch:
    """Samples the link and the remote folder in a thread until :meth:`stop`."""

    iface: str
    remote: Path
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    #: case id -> first time its partial (upload under way) / final folder was seen.
    partial_at: dict[int, float] = field(default_factory=dict)
    final_at: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-watch", daemon=True)

    def start(self) -> Watch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _counter(self, name: str) -> int:
        return int(Path(f"/sys/class/net/{self.iface}/statistics/{name}").read_text())

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            self.samples.append((now, self._counter("tx_bytes"), self._counter("rx_bytes")))
            try:
                names = [p.name for p in self.remote.iterdir()]
            except OSError:
                names = []
            for name in names:
                m = _DIR.match(name)
                if m is None:
                    continue
                seen = self.partial_at if m.group(3) else self.final_at
                seen.setdefault(int(m.group(1)), now)
            self._stop.wait(STEP_S)


def summary(
    watch: Watch, t0: float, link_bps: float, jobs: dict[int, tuple[float, float, float]]
) -> list[str]:
    """Lines to print. ``jobs``: case id -> (job start, job end, completion), epoch s."""
    lines: list[str] = []
    last_up = max(watch.final_at.values(), default=t0)
    span = max(last_up - t0, 1e-9)
    s = [x for x in watch.samples if x[0] >= t0]
    sent = (s[-1][1] - s[0][1]) if len(s) > 1 else 0
    busy_until = [(a, b) for a, b in itertools.pairwise(s) if b[0] <= last_up]
    idle = sum(b[0] - a[0] for a, b in busy_until if (b[1] - a[1]) / (b[0] - a[0]) < 0.2 * link_bps)
    lines.append(
        f"{'link: drop -> last upload verified':34} {span:8.1f} s  "
        f"(upstream {sent / 1e6:.0f} MB, {sent / span / link_bps:.0%} of the nominal rate; "
        f"{idle:.1f} s below 20 % of it)"
    )
    rx = (s[-1][2] - s[0][2]) if len(s) > 1 else 0
    lines.append(f"{'downstream bytes':34} {rx / 1e6:8.1f} MB")
    rows = []
    for cid in sorted(watch.final_at):
        start = watch.partial_at.get(cid)
        end = watch.final_at[cid]
        job = jobs.get(cid)
        rows.append((cid, start, end, job))
    up = [e - st for _, st, e, _ in rows if st is not None]
    wait_submit = [j[0] - e for _, _, e, j in rows if j is not None]
    wait_done = [j[2] - j[1] for _, _, _, j in rows if j is not None]
    for what, vals in (
        ("upload (partial seen -> verified)", up),
        ("upload verified -> job start", wait_submit),
        ("job end -> case completed", wait_done),
    ):
        if vals:
            lines.append(
                f"{what:34} mean {sum(vals) / len(vals):5.2f} s  min {min(vals):5.2f}  "
                f"max {max(vals):5.2f}"
            )
    lines.append("per case (s after the drop): upload start, verified, job start, end, done")
    for cid, st, e, job in rows:
        cols = [st, e, *(job if job else (None, None, None))]
        text = "  ".join("   -  " if c is None else f"{c - t0:6.1f}" for c in cols)
        lines.append(f"  case {cid:3}: {text}")
    return lines
