"""``/metrics``: the database as Prometheus metrics, computed with aggregate SQL per scrape.

Gauges (cases and GPUs per state) are one ``GROUP BY`` each. Counters and histograms
come from the audit trail: the settled past (rows older than :data:`SETTLE`) is
aggregated once and cached with its last id, and each scrape aggregates only the rows
after it. A scrape therefore reads a few recent rows however long the trail is; the
first scrape after a start reads it once. Rows younger than :data:`SETTLE` are re-read
each time because on PostgreSQL a transaction that drew a lower id may still commit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..persistence import Store
from ..persistence.host_health import read_host_health
from ..persistence.outbox import OutboxStatus, outbox_stats
from ..persistence.store_stats import (
    AuditAggregate,
    StateDurations,
    audit_aggregate,
    count_gpus_by_status,
    last_transition_id,
    settled_transition_id,
)
from ..statemachine import CaseState

__all__ = ["SETTLE", "MetricsSource", "render_metrics"]

log = logging.getLogger("mqi_communicator.web")

#: Audit rows older than this are final (no lower id can still commit) and cached.
SETTLE = timedelta(minutes=5)
_JOB_BUCKETS = (60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 21600.0, 43200.0)
_TRANSFER_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0)
#: Time in ``running`` is the job; ``submitting`` is upload + submit; ``retrieving`` is
#: download + verify.
_TIMED = {
    CaseState.RUNNING.value: _JOB_BUCKETS,
    CaseState.SUBMITTING.value: _TRANSFER_BUCKETS,
    CaseState.RETRIEVING.value: _TRANSFER_BUCKETS,
}
_DIRECTION = {CaseState.SUBMITTING.value: "upload", CaseState.RETRIEVING.value: "download"}

#: Said in the exposition (comment lines, which scrapers ignore) instead of a guess.
NOT_AVAILABLE = (
    "# mqi_transfer_bytes_total: not available yet: transferred byte counts are logged "
    "per transfer but not recorded in the database.\n"
)


class MetricsSource(Collector):
    """A prometheus-client collector reading one store.

    Args:
        store: The store to read (never written).
        clock: Aware UTC now, for the settle window.
        hosts: The configured hosts (``mqi_host_up`` is exported for these).
    """

    def __init__(
        self, store: Store, clock: Callable[[], datetime], hosts: Sequence[str] = ()
    ) -> None:
        self._store = store
        self._clock = clock
        self.hosts = list(hosts)
        self._lock = threading.Lock()
        self._cursor = 0
        self._settled = audit_aggregate_empty()

    def audit(self) -> AuditAggregate:
        """The whole trail's aggregate: the cached settled part plus the recent rows."""
        with self._lock, self._store.reading() as s:
            settled = settled_transition_id(s, self._cursor, self._clock() - SETTLE)
            if settled > self._cursor:
                self._settled.add(audit_aggregate(s, self._cursor, settled, _TIMED))
                self._cursor = settled
            total = audit_aggregate_empty()
            total.add(self._settled)
            total.add(audit_aggregate(s, self._cursor, last_transition_id(s), _TIMED))
            return total

    def warm(self) -> None:
        """Aggregate the settled trail now, so that the first scrape does not pay for it.

        Meant for a thread at start; a failure is logged and the next scrape retries.
        """
        try:
            self.audit()
        except Exception:  # a background warm-up must not kill the process
            log.exception("could not pre-aggregate the audit trail for /metrics")

    def notes(self) -> str:
        """Comment lines for the exposition: what is not recorded, instead of a guess."""
        with self._store.reading() as s:
            recorded = read_host_health(s)
        never = [h for h in self.hosts if h not in recorded]
        if not never:
            return NOT_AVAILABLE
        return NOT_AVAILABLE + (
            f"# mqi_host_up: no health recorded yet for {', '.join(never)} (the engine "
            "records a host at its first contact).\n"
        )

    def collect(self) -> Iterable[Metric]:
        """Yield every metric family (called by the registry on each scrape)."""
        cases = self._store.count_by_status()
        with self._store.reading() as s:
            gpus = count_gpus_by_status(s)
            hooks = outbox_stats(s)
            health = read_host_health(s)
        audit = self.audit()
        g = GaugeMetricFamily("mqi_cases", "Cases per state.", labels=["state"])
        for state, n in cases.items():
            g.add_metric([state.value], n)
        yield g
        g = GaugeMetricFamily(
            "mqi_gpus", "GPUs per state (zombie: held, job not proven gone).", labels=["state"]
        )
        for gstate, n in gpus.items():
            g.add_metric([gstate.value], n)
        yield g
        c = CounterMetricFamily(
            "mqi_transitions",
            "State transitions by entity and trigger.",
            labels=["entity", "trigger"],
        )
        for (entity, trigger), n in sorted(audit.transitions.items()):
            c.add_metric([entity, trigger], n)
        yield c
        h = HistogramMetricFamily(
            "mqi_job_duration_seconds", "Time cases spent running (the job), per stay."
        )
        _add_histogram(h, [], audit.durations[CaseState.RUNNING.value])
        yield h
        h = HistogramMetricFamily(
            "mqi_transfer_duration_seconds",
            "Time cases spent uploading+submitting (upload) or downloading (download).",
            labels=["direction"],
        )
        for timed, direction in _DIRECTION.items():
            _add_histogram(h, [direction], audit.durations[timed])
        yield h
        g = GaugeMetricFamily(
            "mqi_host_up",
            "1 while the engine reaches the host, 0 while it backs off (as last recorded).",
            labels=["host"],
        )
        for host in self.hosts:
            if host in health:
                g.add_metric([host], 1.0 if health[host].up else 0.0)
        yield g
        # Per hook is not recorded (a row counts its failed calls), so one total.
        yield CounterMetricFamily(
            "mqi_hook_failures",
            "Failed hook calls (one per hook per delivery attempt).",
            value=hooks["failures_total"],
        )
        g = GaugeMetricFamily(
            "mqi_hook_events", "Notification events in the outbox per status.", labels=["status"]
        )
        for status in OutboxStatus:
            g.add_metric([status.value], hooks[status.value])
        yield g


def audit_aggregate_empty() -> AuditAggregate:
    """An aggregate with zeroed histograms for every timed state."""
    out = AuditAggregate()
    for state, bounds in _TIMED.items():
        out.durations[state] = StateDurations(bounds, [0] * len(bounds))
    return out


def _add_histogram(h: HistogramMetricFamily, labels: list[str], d: StateDurations) -> None:
    buckets = [(str(float(b)), float(n)) for b, n in zip(d.bounds, d.cumulative, strict=True)]
    buckets.append(("+Inf", float(d.count)))
    h.add_metric(labels, buckets, d.total_s)


def render_metrics(source: MetricsSource) -> bytes:
    """The Prometheus text exposition of ``source``, with notes on what is not recorded."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(source)
    return generate_latest(registry) + source.notes().encode()
