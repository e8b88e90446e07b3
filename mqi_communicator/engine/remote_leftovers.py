"""Crash leftovers of uploads on the GPU servers, removed after an engine starts.

An SSH upload lands in ``<remote_base>/mqic_case_<id>_a<attempt>.partial-<hex>`` (and,
without python3 on the far side, its manifest ``<that>.sha256``) before it is verified
and renamed. Every failure the sender sees removes it; a crash does not: the far side's
receiver killed (OOM killer, reboot) mid-upload, or the engine killed between the two
commands of the python-less protocol. (A kill -9 of the engine alone leaves nothing:
the far side reads EOF without the trailer and removes its partial itself.)

:class:`RemoteLeftovers` runs from the tick, once per host of this engine, in the first
tick where the host is not known to be down and the cases that were ``submitting`` on it
when the engine started (caught mid-upload by the crash) have been recovered, i.e. are
no longer ``submitting`` at that attempt: a requeue moves such a case to a new attempt,
and only then is its old attempt's partial a leftover. ONE command
(:func:`~mqi_communicator.remote.transfer.far_side_scripts.leftover_sweep_script`)
removes the entries that

* are directly under the host's ``remote_base`` with exactly our name (real folders
  and manifest files; a symlink is never one, nor followed);
* did not change for :func:`~.leftovers.leftover_min_age_s` (the far side's clock);
* belong to no live attempt: the current attempt of every case that has not ended
  keeps its partials whatever their age (this engine's uploads in flight, and those of
  another engine holding the case's lease, are all of live cases).

The command runs beside the tick (:func:`~.transfers.run_beside`, key ``sweep:<host>``):
a far side that hangs holds up no tick. A host that cannot be reached is marked down
(start is not held up) and swept once it answers; any other failure is logged and left
to the next start. ``local``-transport
hosts are swept by :mod:`~.leftovers` before the first tick.
"""

from __future__ import annotations

import logging
import posixpath
import threading
from collections.abc import Iterable, Mapping
from functools import partial

from ..errors import HostUnreachableError
from ..persistence import CaseRecord
from ..remote.protocol import remote_case_dir
from ..remote.transfer.far_side_scripts import leftover_sweep_script
from ..remote.transport.local import LocalTransport
from ..statemachine import TERMINAL_CASE_STATES, CaseState
from ..textsafe import printable
from .runtime import HostRuntime, TickContext
from .transfers import run_beside

__all__ = ["RemoteLeftovers"]

log = logging.getLogger("mqi_communicator.engine")

_LIVE = [s for s in CaseState if s not in TERMINAL_CASE_STATES]
_TIMEOUT_S = 600.0


class RemoteLeftovers:
    """Sweeps each non-local host's ``remote_base`` once (see the module docstring)."""

    def __init__(
        self,
        hosts: Mapping[str, HostRuntime],
        *,
        min_age_s: float,
        recovering: Iterable[CaseRecord] = (),
    ) -> None:
        self._todo = sorted(
            name for name, h in hosts.items() if not isinstance(h.transport, LocalTransport)
        )
        self._min_age_s = min_age_s
        #: (case id, attempt) -> host of the cases ``submitting`` when the engine started.
        self._recovering = {(c.id, c.attempt): c.host for c in recovering}
        self._running: set[str] = set()  # hosts whose sweep runs beside the tick
        self._lock = threading.Lock()

    @property
    def pending(self) -> list[str]:
        """The hosts not swept yet (a sweep that runs now included)."""
        with self._lock:
            return sorted({*self._todo, *self._running})

    def sweep(self, ctx: TickContext) -> None:
        """Start the sweep of each host still to do that is due (see the module docstring)."""
        with self._lock:
            todo = list(self._todo)
        due = [n for n in todo if n in ctx.hosts and not ctx.health.is_down(n, ctx.now)]
        if not due:
            return
        # Read now, after this tick's claims: a partial of a live attempt is never touched.
        live = ctx.store.list_cases(_LIVE)
        if self._recovering:
            still = {
                (c.id, c.attempt) for c in live if c.status is CaseState.SUBMITTING
            } & self._recovering.keys()
            self._recovering = {k: self._recovering[k] for k in still}
            waiting = set(self._recovering.values())
            due = [n for n in due if n not in waiting]
            if not due:
                return
        keep = "".join(
            posixpath.basename(remote_case_dir("/", c.id, c.attempt)) + "\n" for c in live
        )
        for name in due:
            with self._lock:
                self._todo.remove(name)
                self._running.add(name)
            job = partial(self._sweep_host, ctx.hosts[name], keep)
            # Not started (no room, or stopping): tried again at a later tick.
            if not run_beside(ctx, f"sweep:{name}", name, job, lane="cleanup"):
                self._done(name, again=True)

    def _done(self, name: str, *, again: bool) -> None:
        with self._lock:
            self._running.discard(name)
            if again:
                self._todo.append(name)

    def _sweep_host(self, host: HostRuntime, keep: str, ctx: TickContext) -> None:
        """Run the sweep on ``host`` (beside the tick); each removal is logged."""
        again = False
        try:
            self._sweep(ctx, host, keep)
        except HostUnreachableError as err:
            ctx.host_down(host.name, err)  # swept once it answers
            again = True
        finally:
            self._done(host.name, again=again)

    def _sweep(self, ctx: TickContext, host: HostRuntime, keep: str) -> list[str]:
        script = leftover_sweep_script(host.remote_base, self._min_age_s)
        try:
            result = host.transport.run(script, timeout=_TIMEOUT_S, stdin=keep.encode())
        except HostUnreachableError:
            raise
        except Exception as err:  # refused, or a bug: never let it stop the engine
            log.warning(
                "host %s: leftover sweep failed (%s); next start tries again", host.name, err
            )
            return []
        if result.exit_code != 0:
            log.warning(
                "host %s: leftover sweep exited %s (%s); next start tries again",
                host.name,
                result.exit_code,
                printable(result.stderr.strip()[:300]),
            )
        removed: list[str] = []
        for line in result.stdout.splitlines():
            word, _, leaf = line.partition(" ")
            path = posixpath.join(host.remote_base, leaf)
            if word == "removed":
                log.info("host %s: removed leftover upload %s", host.name, printable(path))
                removed.append(path)
            elif word == "failed":
                log.warning("host %s: leftover %s could not be removed", host.name, printable(path))
        return removed
