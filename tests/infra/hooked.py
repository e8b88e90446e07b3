"""Real transports and schedulers with a hook before the real call (no fakes of the work).

``HookedTransport`` runs ``before_upload(local_dir, remote_dir)`` and then the real
upload (``before_download(remote_dir, local_dir)`` and ``before_remove(remote_dir)``
likewise, when given); the hook may
block (a gate the test opens), act on the database as another engine would, or raise to
stand for a transfer that broke. ``HookedScheduler`` does the same before ``submit``.
:class:`DelegatingTransport` forwards everything else (and is the base of any test
transport that only watches one call).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mqi_communicator.remote.protocol import (
    CommandResult,
    JobRef,
    JobSpec,
    JobStatus,
    ProgressCallback,
    Scheduler,
    TransferReport,
    Transport,
)


class DelegatingTransport:
    """A real transport passed through untouched: a subclass overrides the call it watches.

    The one place that forwards every ``Transport`` method, so a method added to the
    protocol is added here once, not in each test's wrapper.
    """

    def __init__(self, inner: Transport) -> None:
        self.inner = inner

    @property
    def host_name(self) -> str:
        return self.inner.host_name

    def run(
        self, command: Sequence[str] | str, *, timeout: float, stdin: bytes | None = None
    ) -> CommandResult:
        return self.inner.run(command, timeout=timeout, stdin=stdin)

    def upload_tree(
        self,
        local_dir: Path,
        remote_dir: str,
        *,
        progress: ProgressCallback | None = None,
        timeout: float = 3600.0,
        exclude: Sequence[str] = (),
        abort: threading.Event | None = None,
    ) -> TransferReport:
        return self.inner.upload_tree(
            local_dir, remote_dir, progress=progress, timeout=timeout, exclude=exclude, abort=abort
        )

    def download_tree(
        self,
        remote_dir: str,
        local_dir: Path,
        *,
        progress: ProgressCallback | None = None,
        timeout: float = 3600.0,
        abort: threading.Event | None = None,
    ) -> TransferReport:
        return self.inner.download_tree(
            remote_dir, local_dir, progress=progress, timeout=timeout, abort=abort
        )

    def remove_tree(self, remote_dir: str, *, timeout: float = 600.0) -> None:
        self.inner.remove_tree(remote_dir, timeout=timeout)

    def close(self) -> None:
        self.inner.close()


class HookedTransport(DelegatingTransport):
    """``inner`` with ``before_upload`` (and ``before_download``) called first."""

    def __init__(
        self,
        inner: Transport,
        before_upload: Callable[[Path, str], None],
        before_download: Callable[[str, Path], None] | None = None,
        before_remove: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(inner)
        self.before_upload = before_upload
        self.before_download = before_download
        self.before_remove = before_remove

    def upload_tree(self, local_dir: Path, remote_dir: str, **options: Any) -> TransferReport:
        self.before_upload(local_dir, remote_dir)
        return super().upload_tree(local_dir, remote_dir, **options)

    def download_tree(self, remote_dir: str, local_dir: Path, **options: Any) -> TransferReport:
        if self.before_download is not None:
            self.before_download(remote_dir, local_dir)
        return super().download_tree(remote_dir, local_dir, **options)

    def remove_tree(self, remote_dir: str, *, timeout: float = 600.0) -> None:
        if self.before_remove is not None:
            self.before_remove(remote_dir)
        super().remove_tree(remote_dir, timeout=timeout)


@dataclass
class HookedScheduler:
    """``inner`` with ``before_submit`` called first on every submit."""

    inner: Scheduler
    before_submit: Callable[[JobSpec], None]

    def submit(self, spec: JobSpec) -> JobRef:
        self.before_submit(spec)
        return self.inner.submit(spec)

    def poll(self, refs: Sequence[JobRef]) -> dict[JobRef, JobStatus]:
        return self.inner.poll(refs)

    def kill(self, ref: JobRef) -> None:
        self.inner.kill(ref)

    def find_by_label(self, label: str, remote_dir: str) -> JobRef | None:
        return self.inner.find_by_label(label, remote_dir)
