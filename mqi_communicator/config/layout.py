"""Where the configured folders lie relative to each other, and which are missing.

Errors (:func:`layout_errors`, raised by the config model, so every command refuses):

* ``results_dir`` equal to or inside ``watch_dir``: results would be taken as new cases;
* ``watch_dir`` equal to or inside ``results_dir``: a case could land on results;
* a local-transport host's ``remote_base`` equal to or inside ``watch_dir``: every
  upload would be registered as a new case (seen: two "cases" submitted as a third
  case's job, holding both GPUs);
* the SQLite database file inside ``watch_dir``;
* two GPUs of one host on one CUDA device (``cuda_devices`` lists that overlap).

Warnings (:func:`layout_warnings`, printed by ``check-config``): a folder that does not
exist yet, and a host no GPU uses. ``run`` refuses a missing ``watch_dir`` or
``results_dir`` (:func:`missing_folders`) rather than create it: a network share that is
not mounted would otherwise be replaced, silently, by an empty folder on the local disk.

Paths are compared as the operating system would open them: symlinks and ``..``
resolved, and case-insensitively where the platform is (``os.path.normcase``: Windows).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from .hosts import GpuConfig, HostConfig
from .log import LogConfig

__all__ = ["Layout", "is_within", "layout_errors", "layout_warnings", "missing_folders"]


class Layout(Protocol):
    """What these checks read of a :class:`~.model.Config`.

    A protocol, not the model itself: ``Config`` runs :func:`layout_errors` while it
    validates, so naming it here would make the two modules import each other.
    """

    @property
    def watch_dir(self) -> Path: ...
    @property
    def results_dir(self) -> Path: ...
    @property
    def database_url(self) -> str: ...
    @property
    def hosts(self) -> Mapping[str, HostConfig]: ...
    @property
    def gpus(self) -> Sequence[GpuConfig]: ...
    @property
    def log(self) -> LogConfig: ...


def _parts(path: Path) -> tuple[str, ...]:
    return Path(os.path.normcase(os.path.realpath(path))).parts


def is_within(inner: Path, outer: Path) -> bool:
    """True when ``inner`` is ``outer`` or lies below it, once both are resolved."""
    i, o = _parts(inner), _parts(outer)
    return i[: len(o)] == o


def _sqlite_file(database_url: str) -> Path | None:
    # Imported here: the config must load without SQLAlchemy's weight until it is used.
    from ..persistence.engine_setup import sqlite_file

    return sqlite_file(database_url)


def _devices(spec: str) -> set[str]:
    return {d.strip() for d in spec.split(",") if d.strip()}


def layout_errors(cfg: Layout) -> list[tuple[str, str]]:
    """``(key path, what is wrong)`` for every dangerous overlap in ``cfg``."""
    out: list[tuple[str, str]] = []
    if is_within(cfg.results_dir, cfg.watch_dir):
        out.append(
            ("results_dir", "expected a folder outside watch_dir (results would become cases)")
        )
    elif is_within(cfg.watch_dir, cfg.results_dir):
        out.append(
            ("watch_dir", "expected a folder outside results_dir (cases would mix with results)")
        )
    for name, host in cfg.hosts.items():
        if host.transport == "local" and is_within(Path(host.remote_base), cfg.watch_dir):
            out.append(
                (
                    f"hosts.{name}.remote_base",
                    "expected a folder outside watch_dir (every upload would become a new case)",
                )
            )
    db = _sqlite_file(cfg.database_url)
    if db is not None and is_within(db, cfg.watch_dir):
        out.append(
            ("database_url", "expected a database file outside watch_dir (it is no case folder)")
        )
    seen: dict[tuple[str, str], int] = {}
    for i, gpu in enumerate(cfg.gpus):
        for dev in sorted(_devices(gpu.cuda_devices or "")):
            first = seen.setdefault((gpu.host, dev), i)
            if first != i:
                out.append(
                    (
                        f"gpus[{i}].cuda_devices",
                        f"expected devices no other GPU of host {gpu.host!r} uses: CUDA "
                        f"device {dev!r} is already gpus[{first}] ({cfg.gpus[first].name!r})",
                    )
                )
                break
    return out


def missing_folders(cfg: Layout) -> list[tuple[str, Path]]:
    """``(key, folder)`` for ``watch_dir`` and ``results_dir`` when they do not exist."""
    return [
        (key, path)
        for key, path in (("watch_dir", cfg.watch_dir), ("results_dir", cfg.results_dir))
        if not path.is_dir()
    ]


def layout_warnings(cfg: Layout) -> list[str]:
    """Things worth knowing that do not stop the communicator: missing folders, idle hosts."""
    out = [
        f"{key}: {path} does not exist; create it before `run` (run refuses a missing "
        "folder rather than create one where a share may not be mounted)"
        for key, path in missing_folders(cfg)
    ]
    for name, host in cfg.hosts.items():
        if host.transport == "local" and not Path(host.remote_base).is_dir():
            out.append(
                f"hosts.{name}.remote_base: {host.remote_base} does not exist; the first "
                "upload creates it"
            )
    if cfg.log.file is not None and not cfg.log.file.parent.is_dir():
        out.append(f"log.file: folder {cfg.log.file.parent} does not exist; `run` creates it")
    db = _sqlite_file(cfg.database_url)
    if db is not None and not db.parent.is_dir():
        out.append(f"database_url: folder {db.parent} does not exist; `run` creates it")
    used = {g.host for g in cfg.gpus}
    for name in cfg.hosts:
        if name not in used:
            out.append(f"hosts.{name}: no GPU in gpus uses this host; it is never used")
    return out
