"""The far side of a one-pass verified upload: runs on the GPU server, Python >= 3.6.

``ssh_upload`` sends this file's text as ``python3 -c <text> PARTIAL`` with stdin::

    <tar archive> <NUL padding> <manifest text> "#end <number of files>\\n"

It extracts the archive into the fresh, empty directory PARTIAL while hashing every
regular file as its bytes arrive, then reads the sender's sha256 manifest (the
``sha256sum`` text of :mod:`~mqi_communicator.remote.transfer.manifest`) and exits 0 only when
that text equals, byte for byte, the manifest of what it wrote. The trailer proves the
sender finished on purpose: a sender that gives up closes the channel without it.

Hashing on the way in replaces a second pass that re-read every file after ``tar -x``
(and a second command): bench/bench_transfer.py measures the difference.

Only what our sender produces is accepted: directories and regular files under
relative names without ``..``, in GNU, ustar or PAX headers with valid checksums.
Links, devices, sparse files and the like are refused (exit 21), as are duplicate
names (files are opened with ``O_EXCL``). Modes keep their permission bits (minus
umask, as ``tar`` does); owners are not restored.

Compressed stdin (``PARTIAL zlib`` or ``PARTIAL zstd <path of zstd>``): the whole
stdin above is one zlib stream, or one zstd frame that the far side's ``zstd -d``
unpacks; everything after decompression is as above, so verification is on the
uncompressed bytes, and the trailer then also names the sha256 of every byte before it
(``#end <files> <sha256>``): the manifest covers only file contents, and zlib's adler32
misses changes that keep its sums (a flipped bit re-points a back-reference from "0770"
to "7007": a mode field changes, exit 0 without this). So a corrupted stream either
decodes to the sender's exact bytes or exits 21, as does a truncated one.

Exit codes: 0 verified; 21 unreadable or refused archive, or a write failed (disk
full); 22 the manifest differs. Messages go to stderr. The calling shell removes
PARTIAL on any failure.

Stdlib only, and Python 3.6 syntax (RHEL 7-era servers): ``typing.Dict`` rather than
``dict[...]``, no walrus, ``%`` formatting.
"""

import hashlib
import io
import os
import subprocess
import sys
import zlib
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

if TYPE_CHECKING:
    Hash = hashlib._Hash
    Source = io.BufferedReader[io.RawIOBase]
    Buffered = Source
    Unpacker = subprocess.Popen[bytes]
else:
    Buffered = io.BufferedReader  # not subscriptable at run time before Python 3.9

BLOCK = 512
CHUNK = 1 << 20
EXIT_ARCHIVE = 21
EXIT_MISMATCH = 22
TRAILER = b"#end "
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class Refused(Exception):
    """The archive is not one our sender makes, or writing it failed."""


def read_exact(src: "Source", n: int) -> bytes:
    data = src.read(n)
    if len(data) != n:
        raise Refused("archive truncated (the sender stopped or the connection dropped)")
    return data


def number(field: bytes) -> int:
    if field[:1] in (b"\x80", b"\xff"):  # GNU base-256: sizes >= 8 GiB, times before 1970
        value = int.from_bytes(field[1:], "big")
        return value - 256 ** (len(field) - 1) if field[:1] == b"\xff" else value
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise Refused("garbled number in a tar header: %r" % text) from None


def check_header(hdr: bytes) -> None:
    stored = number(hdr[148:156])
    blanked = hdr[:148] + b" " * 8 + hdr[156:]
    unsigned = sum(blanked)  # the signed sum (old tars) only when that fails
    if stored != unsigned and stored != unsigned - 256 * sum(b > 127 for b in blanked):
        raise Refused("tar header checksum mismatch (not a tar stream, or corrupted)")


def pax_records(data: bytes) -> Dict[bytes, bytes]:
    out: Dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data) and data[pos : pos + 1] != b"\0":
        space = data.find(b" ", pos)
        if space < 0:
            raise Refused("garbled PAX header")
        length = int(data[pos:space])
        record = data[space + 1 : pos + length]
        if length <= 0 or not record.endswith(b"\n") or b"=" not in record:
            raise Refused("garbled PAX header")
        key, _, value = record[:-1].partition(b"=")
        out[key] = value
        pos += length
    return out


def safe_relative(name: bytes) -> bytes:
    parts = [p for p in name.split(b"/") if p not in (b"", b".")]
    if name.startswith(b"/") or b".." in parts:
        raise Refused("unsafe member name %r" % name)
    return b"/".join(parts)


def manifest_line(rel: bytes, digest: bytes) -> bytes:
    if b"\\" in rel or b"\n" in rel:
        esc = rel.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")
        return b"\\" + digest + b"  " + esc + b"\n"
    return digest + b"  " + rel + b"\n"


def write_file(src: "Source", path: bytes, size: int, mode: int, buf: bytearray) -> bytes:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise Refused("duplicate member %r" % path) from None
    view = memoryview(buf)
    digest = hashlib.sha256()
    try:
        left = size
        while left:
            n = src.readinto(view[: min(left, CHUNK)])
            if not n:
                raise Refused("archive truncated inside %r" % path)
            digest.update(view[:n])
            done = 0
            while done < n:
                done += os.write(fd, view[done:n])
            left -= n
    finally:
        os.close(fd)
    read_exact(src, -size % BLOCK)
    return digest.hexdigest().encode()


def extract(src: "Source", root: bytes, umask: int) -> Dict[bytes, bytes]:
    """Extract members into ``root``; return ``{relative path: sha256 hex}``."""
    got: Dict[bytes, bytes] = {}
    buf = bytearray(CHUNK)
    long_name: Optional[bytes] = None
    pax: Dict[bytes, bytes] = {}
    while True:
        hdr = read_exact(src, BLOCK)
        if hdr == b"\0" * BLOCK:
            return got
        check_header(hdr)
        kind = hdr[156:157]
        size = number(hdr[124:136])
        if kind in (b"L", b"x", b"g"):
            data = read_exact(src, size + (-size % BLOCK))[:size]
            if kind == b"L":
                long_name = data.split(b"\0", 1)[0]
            elif kind == b"x":
                pax = pax_records(data)
            continue
        name = hdr[:100].split(b"\0", 1)[0]
        if hdr[257:263] == b"ustar\x00" and hdr[345:346] != b"\0":
            name = hdr[345:500].split(b"\0", 1)[0] + b"/" + name
        name = pax.get(b"path", long_name if long_name is not None else name)
        size = int(pax[b"size"]) if b"size" in pax else size
        if size < 0:
            raise Refused("negative size for %r" % name)
        # PAX keeps times the ustar field cannot hold (before 1970, fractions)
        mtime = float(pax[b"mtime"]) if b"mtime" in pax else number(hdr[136:148])
        long_name, pax = None, {}
        rel = safe_relative(name)
        path = os.path.join(root, rel) if rel else root
        mode = number(hdr[100:108]) & 0o777
        if kind == b"5":
            if rel:
                os.makedirs(path, exist_ok=True)
                os.chmod(path, (mode | 0o700) & ~umask)
        elif kind in (b"0", b"\0", b"7"):
            if not rel:
                raise Refused("file member without a name")
            parent = os.path.dirname(path)
            if not os.path.isdir(parent):
                os.makedirs(parent)
            got[rel] = write_file(src, path, size, mode & ~umask, buf)
            os.utime(path, (mtime, mtime))
        else:
            raise Refused("unsupported member type %r for %r" % (kind, name))


def trailer(files: int, stream: Optional[str] = None) -> bytes:
    """The last line of stdin; ``stream``: the sha256 hex of all before it (compressed)."""
    return (
        TRAILER + (b"%d" % files if stream is None else b"%d %s" % (files, stream.encode())) + b"\n"
    )


def read_manifest(src: "Source", seen: "Optional[Hash]" = None) -> Optional[bytes]:
    """The sender's manifest text after the archive, or None without the trailer.

    ``seen``: the sha256 of the stream read so far (compressed uploads); the trailer must
    then name the sha256 of the whole stream before it, else Refused.
    """
    raw = src.read()
    rest = raw.lstrip(b"\0")
    body, _, last = rest[:-1].rpartition(b"\n")
    body = body + b"\n" if body else b""
    fields = last[len(TRAILER) :].split(b" ")
    if not rest.endswith(b"\n") or not last.startswith(TRAILER) or not fields[0].isdigit():
        return None
    if len(fields) != (1 if seen is None else 2):
        return None
    if seen is not None:
        seen.update(raw[: len(raw) - len(last) - 1])
        if seen.hexdigest().encode() != fields[1]:
            raise Refused("compressed stream corrupted (it decodes to other bytes than were sent)")
    return body if int(fields[0]) == body.count(b"\n") else None


def unescape(name: bytes) -> bytes:
    out, i = bytearray(), 0
    while i < len(name):
        pair = name[i : i + 2]
        if pair in (b"\\\\", b"\\n"):
            out += b"\\" if pair == b"\\\\" else b"\n"
            i += 2
        else:
            out += name[i : i + 1]
            i += 1
    return bytes(out)


def differences(want_text: bytes, got: Dict[bytes, bytes]) -> List[bytes]:
    want: Dict[bytes, bytes] = {}
    for line in want_text.split(b"\n")[:-1]:
        esc = line.startswith(b"\\")
        body = line[1:] if esc else line
        want[unescape(body[66:]) if esc else body[66:]] = body[:64]
    out = [b"missing: " + n for n in sorted(set(want) - set(got))]
    out += [b"unexpected: " + n for n in sorted(set(got) - set(want))]
    out += [b"digest differs: " + n for n in sorted(want) if n in got and got[n] != want[n]]
    return out or [b"manifest text differs (ordering or format)"]


def widen_pipe(fd: int) -> None:
    """Let sshd run up to 1 MiB ahead of us while we write files (Linux pipes only)."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), CHUNK)
    except (ImportError, OSError):
        pass  # not a pipe, not Linux, or over /proc/sys/fs/pipe-max-size: keep the default


class Inflating(io.RawIOBase):
    """A file descriptor carrying one zlib stream, read as the bytes it inflates to.

    Never inflates more than the caller asked for, so a small stream of zeros
    cannot blow up memory.
    """

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self._z = zlib.decompressobj()

    def readable(self) -> bool:
        return True

    def readinto(self, b: "bytearray") -> int:  # type: ignore[override]
        want = len(b)
        while True:
            if self._z.unconsumed_tail:
                out = self._z.decompress(self._z.unconsumed_tail, want)
            elif self._z.eof:
                if self._z.unused_data or os.read(self._fd, 1):
                    raise Refused("data after the end of the compressed stream")
                return 0
            else:
                data = os.read(self._fd, CHUNK)
                if not data:
                    raise Refused("compressed stream truncated (the sender stopped)")
                out = self._z.decompress(data, want)
            if out:
                b[: len(out)] = out
                return len(out)


class Digesting(Buffered):
    """A decompressed stream that also hashes every byte it hands out (see read_manifest)."""

    def __init__(self, raw: "io.RawIOBase", size: int) -> None:
        super().__init__(raw, size)
        self.sha = hashlib.sha256()

    def read(self, size: Optional[int] = -1) -> bytes:
        data = super().read(size)
        self.sha.update(data)
        return data

    def readinto(self, b: "bytearray") -> int:  # type: ignore[override]
        n = super().readinto(b)
        self.sha.update(memoryview(b)[:n])
        return n


def open_source(codec: str, zstd: Optional[str]) -> "Tuple[Source, Optional[Unpacker]]":
    """Our stdin as the uncompressed stream (and the zstd process feeding it, if any)."""
    stdin = sys.stdin.fileno()
    if codec == "zlib":
        return Digesting(Inflating(stdin), CHUNK), None
    if codec == "zstd" and zstd:
        # its stderr (a few lines at most) is read after it ends: our message is one line
        argv = [zstd, "-q", "-d", "-c"]
        proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        widen_pipe(proc.stdout.fileno())
        return Digesting(io.FileIO(proc.stdout.fileno(), "rb", closefd=False), CHUNK), proc
    if codec != "off":
        raise Refused("unknown compression %r" % codec)
    widen_pipe(stdin)
    return io.BufferedReader(io.FileIO(stdin, "rb", closefd=False), CHUNK), None


def unpacker_failed(proc: "Optional[Unpacker]", stop: bool = True) -> bool:
    """Reap the zstd process (killed if ``stop`` and still running); True when it failed."""
    if proc is None:
        return False
    try:
        # after our EOF it is exiting; else we stopped early (archive refused)
        code = proc.wait(timeout=2 if stop else None)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False
    if code == 0:
        return False
    why = proc.stderr.read().decode("utf-8", "replace").split("\n") if proc.stderr else []
    last = [line.strip() for line in why if line.strip()][-1:]
    sys.stderr.write(
        "mqi-upload: refused archive: compressed stream corrupted or truncated "
        "(zstd -d exit %d%s)\n" % (proc.returncode, "".join(": " + line for line in last))
    )
    return True


def main() -> int:
    root = os.fsencode(sys.argv[1])
    codec = sys.argv[2] if len(sys.argv) > 2 else "off"
    umask = os.umask(0o022)
    os.umask(umask)
    proc = None
    try:
        src, proc = open_source(codec, sys.argv[3] if len(sys.argv) > 3 else None)
        with src:
            got = extract(src, root, umask)
            want = read_manifest(src, src.sha.copy() if isinstance(src, Digesting) else None)
    except (Refused, ValueError, zlib.error) as err:
        if unpacker_failed(proc):
            return EXIT_ARCHIVE
        if isinstance(err, zlib.error):
            err = Refused("compressed stream corrupted (%s)" % err)
        sys.stderr.write("mqi-upload: refused archive: %s\n" % err)
        return EXIT_ARCHIVE
    except OSError as err:
        unpacker_failed(proc)
        sys.stderr.write("mqi-upload: writing the upload failed: %s\n" % err)
        return EXIT_ARCHIVE
    if unpacker_failed(proc, stop=False):  # read to its EOF: it ends by itself
        return EXIT_ARCHIVE
    if want is None:
        sys.stderr.write("mqi-upload: the sender did not finish (no manifest trailer)\n")
        return EXIT_MISMATCH
    mine = b"".join(manifest_line(rel, got[rel]) for rel in sorted(got))
    if mine != want:
        sys.stderr.write("mqi-upload: sha256 verification failed:\n")
        for line in differences(want, got)[:20]:
            sys.stderr.write("  %s\n" % line.decode("utf-8", "replace"))
        return EXIT_MISMATCH
    return 0


if __name__ == "__main__":
    sys.exit(main())
