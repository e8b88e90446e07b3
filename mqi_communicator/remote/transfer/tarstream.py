"""Enumerate a case directory, and stream it as tar (or extract such a stream).

Enumeration comes first and is strict: it refuses (``CaseContentError`` naming the
path) symlinks that leave the case, broken symlinks, symlinks to directories,
files we cannot open for reading, directories we cannot list, and sockets, FIFOs
and devices. The tar stream then contains exactly the enumerated entries.

Symlinks that stay inside the case: a symlink to a regular file inside the case is
sent as a regular file holding the target's bytes (tar ``--dereference``), and hard
links as separate files (``--hard-dereference``), so the far side receives a
self-contained tree of plain files, every one covered by the manifest.
Symlinks to directories are refused: following them could duplicate or loop, and
a MOQUI case never needs them.

Exclusion: ``exclude`` names relative paths left out of the tree (with everything
under them), whatever they are (directory, file, symlink, even one pointing outside
the case, which is then not refused), matched without regard to letter case so that
``OUTPUT`` cannot stand in for ``output`` on a case-insensitive far side. The upload
uses it for the case's own results folder (see ``engine/retrieve_step.py``); what was
left out is listed in :attr:`CaseTree.excluded`, and the source is never changed.

Building uses system GNU tar when present (1.7x faster than :mod:`tarfile` here),
with a :mod:`tarfile` fallback (Windows, or no GNU tar). Extraction likewise.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Generator, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO

from mqi_communicator.errors import CaseContentError, TransferError

__all__ = [
    "CHUNK",
    "CaseFile",
    "CaseTree",
    "TarExtractor",
    "enumerate_tree",
    "is_excluded",
    "iter_tar_chunks",
]

#: Transfer chunk size (1 MiB): large enough to amortise per-call overhead.
CHUNK = 1 << 20


@dataclass(frozen=True)
class CaseFile:
    """A regular file to send: relative POSIX path, the local path to read, size."""

    rel: str
    path: Path
    size: int


@dataclass(frozen=True)
class CaseTree:
    """What enumeration found under ``root``: files and (relative) directories.

    ``excluded`` lists the relative paths left out by ``enumerate_tree(exclude=...)``.
    """

    root: Path
    files: tuple[CaseFile, ...]
    dirs: tuple[str, ...]
    excluded: tuple[str, ...] = ()

    @property
    def total_bytes(self) -> int:
        """Sum of the file sizes."""
        return sum(f.size for f in self.files)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def is_excluded(rel: str, exclude: Sequence[str]) -> bool:
    """Whether the relative POSIX path ``rel`` is one of ``exclude``, ignoring letter case.

    Only the entry itself matches; enumeration never descends into an excluded entry.
    """
    folded = rel.casefold()
    return any(folded == e.strip("/").casefold() for e in exclude)


def enumerate_tree(
    root: Path,
    *,
    allow_empty: bool = False,
    follow_symlinks: bool = True,
    exclude: Sequence[str] = (),
) -> CaseTree:
    """List every entry under ``root``, refusing what cannot be sent faithfully.

    Args:
        root: The directory to send.
        allow_empty: Accept a tree without regular files.
        follow_symlinks: List in-case symlinks to files as files (upload). When
            False they are only checked, not listed (verifying a received tree).
        exclude: Relative POSIX paths to leave out, with everything under them,
            whatever their type (see the module docstring); checked before any refusal.

    Raises:
        CaseContentError: naming the offending path.
    """
    if not root.is_dir():
        raise CaseContentError(f"{root} is not a directory")
    real_root = os.path.realpath(root)
    files: list[CaseFile] = []
    dirs: list[str] = []
    excluded: list[str] = []

    def walk(directory: Path, rel_prefix: str) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as err:
            raise CaseContentError(f"cannot list directory {directory}: {err}") from err
        for entry in entries:
            path = Path(entry.path)
            rel = rel_prefix + entry.name
            if exclude and is_excluded(rel, exclude):
                excluded.append(rel)  # not even stat-ed: its type and target do not matter
                continue
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                target = Path(os.path.realpath(path))
                if not _inside(str(target), real_root):
                    raise CaseContentError(f"symlink {path} points outside the case (to {target})")
                if target.is_dir():
                    raise CaseContentError(f"symlink {path} points to a directory; not supported")
                if not target.is_file():
                    raise CaseContentError(f"symlink {path} is broken or not to a regular file")
                if follow_symlinks:
                    _check_readable(path)
                    files.append(CaseFile(rel, path, target.stat().st_size))
            elif stat.S_ISDIR(st.st_mode):
                dirs.append(rel)
                walk(path, rel + "/")
            elif stat.S_ISREG(st.st_mode):
                _check_readable(path)
                files.append(CaseFile(rel, path, st.st_size))
            else:
                raise CaseContentError(
                    f"{path} is not a regular file or directory (socket/FIFO/device)"
                )

    walk(Path(real_root), "")
    if not files and not allow_empty:
        left_out = f" besides {', '.join(excluded)} (never sent)" if excluded else ""
        raise CaseContentError(f"{root} contains no files{left_out}")
    return CaseTree(Path(real_root), tuple(files), tuple(dirs), tuple(excluded))


def _check_readable(path: Path) -> None:
    # Opening (not os.access) is the honest test: ACLs, root without DAC override...
    try:
        with path.open("rb"):
            pass
    except OSError as err:
        raise CaseContentError(f"cannot read {path}: {err}") from err


@cache
def _gnu_tar() -> str | None:
    exe = shutil.which("tar")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return exe if "GNU tar" in out.stdout else None


def iter_tar_chunks(
    tree: CaseTree, *, use_system_tar: bool | None = None
) -> Generator[bytes, None, None]:
    """Yield a tar archive of exactly ``tree``'s entries, in chunks of up to :data:`CHUNK`.

    Closing the generator early stops the producer.

    Raises:
        CaseContentError: the producer could not read the tree (it changed under us).
    """
    exe = _gnu_tar() if use_system_tar in (None, True) else None
    if exe is not None:
        yield from _gnu_tar_chunks(exe, tree)
    else:
        yield from _tarfile_chunks(tree)


def _gnu_tar_chunks(exe: str, tree: CaseTree) -> Iterator[bytes]:
    names = [f"./{d}" for d in tree.dirs] + [f"./{f.rel}" for f in tree.files]
    with tempfile.NamedTemporaryFile("wb", suffix=".list", delete=False) as lst:
        lst.write(b"\0".join(os.fsencode(n) for n in names) + b"\0")
    # cwd= instead of -C: GNU tar unquotes backslash escapes in -C arguments.
    # --hard-dereference: every file travels as data, never as a link member (the
    # far-side receiver accepts only directories and regular files).
    argv = [exe, "-c", "-f", "-", "--no-recursion", "--dereference", "--hard-dereference"]
    argv += ["--no-unquote"]
    argv += ["--null", "--verbatim-files-from", "-T", lst.name]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tree.root)
    assert proc.stdout is not None and proc.stderr is not None
    err_chunks: list[bytes] = []
    drain = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
    drain.start()
    try:
        while chunk := proc.stdout.read(CHUNK):
            yield chunk
        rc = proc.wait()
        drain.join()
        if rc != 0:
            msg = b"".join(err_chunks).decode(errors="replace").strip()
            raise CaseContentError(f"tar could not read {tree.root} (exit {rc}): {msg}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        Path(lst.name).unlink(missing_ok=True)


def _tarfile_chunks(tree: CaseTree) -> Iterator[bytes]:
    read_fd, write_fd = os.pipe()
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            with (
                os.fdopen(write_fd, "wb", buffering=CHUNK) as out,
                tarfile.open(
                    fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, dereference=True
                ) as tar,
            ):
                for d in tree.dirs:
                    tar.add(tree.root / d, arcname=f"./{d}", recursive=False)
                for f in tree.files:
                    # dereference=True: symlinks and hard links become plain files
                    info = tar.gettarinfo(str(f.path), arcname=f"./{f.rel}")
                    with f.path.open("rb") as src:
                        tar.addfile(info, src)
        except BaseException as err:  # reported to the consumer below
            errors.append(err)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    with os.fdopen(read_fd, "rb") as src:
        while chunk := src.read(CHUNK):
            yield chunk
    producer.join()
    if errors:
        raise CaseContentError(f"could not read {tree.root}: {errors[0]}") from errors[0]


class TarExtractor:
    """Extract a tar stream fed with :meth:`write` into ``dest`` (which must exist).

    Uses GNU tar when present (it refuses ``..`` and absolute member names), else
    :mod:`tarfile` with the ``data`` filter.
    """

    def __init__(self, dest: Path, *, use_system_tar: bool | None = None) -> None:
        self._dest = dest
        self._errors: list[BaseException] = []
        exe = _gnu_tar() if use_system_tar in (None, True) else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._stderr = b""
        self._sink: IO[bytes]
        if exe is not None:
            argv = [exe, "-x", "-f", "-", "--no-same-owner"]
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE, cwd=dest
            )
            assert self._proc.stdin is not None
            self._sink = self._proc.stdin
            self._thread = threading.Thread(target=self._drain, daemon=True)
        else:
            read_fd, write_fd = os.pipe()
            self._sink = os.fdopen(write_fd, "wb")
            self._thread = threading.Thread(target=self._extract, args=(read_fd,), daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        self._stderr = self._proc.stderr.read()

    def _extract(self, read_fd: int) -> None:
        try:
            with os.fdopen(read_fd, "rb") as src, tarfile.open(fileobj=src, mode="r|") as tar:
                tar.extractall(self._dest, filter="data")
        except BaseException as err:  # reported by close()
            self._errors.append(err)

    def write(self, data: bytes) -> None:
        """Feed the next bytes of the archive.

        Raises:
            TransferError: the extractor stopped (its error is in the message).
        """
        try:
            self._sink.write(data)
        except OSError as err:
            self.abort()
            raise TransferError(
                f"local extraction into {self._dest} failed: {self._detail()}"
            ) from err

    def close(self) -> None:
        """Finish; raises ``TransferError`` when extraction did not succeed."""
        with suppress(OSError):
            self._sink.close()
        assert self._thread is not None
        if self._proc is not None:
            rc = self._proc.wait()
            self._thread.join()
            if rc != 0:
                raise TransferError(
                    f"local tar extraction into {self._dest} failed (exit {rc}): {self._detail()}"
                )
        else:
            self._thread.join()
            if self._errors:
                raise TransferError(
                    f"local extraction into {self._dest} failed: {self._errors[0]}"
                ) from self._errors[0]

    def abort(self) -> None:
        """Stop extracting (the caller removes ``dest``)."""
        with suppress(OSError):
            self._sink.close()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _detail(self) -> str:
        if self._errors:
            return str(self._errors[0])
        return self._stderr.decode(errors="replace").strip()
