"""The POSIX shell scripts the far side runs for tree transfers.

Kept apart from the streaming code so the protocol between the two sides reads in
one place. Every value is inserted through :func:`~.quoting.quote`.

Uploads have two protocols. Where the far side has ``python3`` >= 3.6 (found once per
connection by :data:`PYTHON_PROBE`; ``/usr/bin/python3`` first, which skips pyenv/conda
shims), ONE command receives, hashes and commits: :func:`upload_one_pass_script` runs
:mod:`~mqi_communicator.remote.transfer.far_side_receiver`. Without python3, ``tar -x`` receives
and a second command checks the files with coreutils ``sha256sum`` (65-250 MB/s here:
no SHA-NI) before the rename. Setting ``MQI_REMOTE_NO_PYTHON=1`` in the transport's
``env`` forces that fallback (tests); downloads honour it too.
"""

from __future__ import annotations

import posixpath
from functools import cache
from importlib import resources

from mqi_communicator.remote.protocol import PARTIAL_UPLOAD_PATTERN
from mqi_communicator.remote.quoting import quote
from mqi_communicator.remote.transfer.manifest import REMOTE_HASHER_PY, REMOTE_MANIFEST_COMMAND

__all__ = [
    "EXIT_DEST_EXISTS",
    "EXIT_NO_SOURCE",
    "PYTHON_PROBE",
    "cleanup_script",
    "download_manifest_script",
    "download_tar_script",
    "leftover_sweep_script",
    "upload_commit_script",
    "upload_one_pass_script",
    "upload_receive_script",
]

#: Exit status of the upload script when ``remote_dir`` already exists.
EXIT_DEST_EXISTS = 17
#: Exit status of the download scripts when the source directory is missing.
EXIT_NO_SOURCE = 30

_UPLOAD_RECEIVE = """trap '' PIPE
dest={dest}; part={part}; parent={parent}
say() {{ echo "mqi-upload: $1" >&2; }}
if [ -e "$dest" ] || [ -L "$dest" ]; then say "destination already exists: $dest"; exit 17; fi
mkdir -p -- "$parent" || {{ say "cannot create parent directory $parent"; exit 18; }}
mkdir -- "$part" || {{ say "cannot create $part"; exit 18; }}
if ! (cd -- "$part" && exec tar -x -f - --no-same-owner); then
  rc=$?; rm -rf -- "$part"; say "tar extraction failed (exit $rc)"; exit 21
fi
exit 0
"""

#: Prints the path of a usable python3 (>= 3.6), or nothing.
PYTHON_PROBE = """[ -n "${MQI_REMOTE_NO_PYTHON:-}" ] && exit 0
for py in /usr/bin/python3 "$(command -v python3 2>/dev/null)"; do
  if [ -n "$py" ] && [ -x "$py" ] &&
     "$py" -c 'import sys; sys.exit(sys.version_info < (3, 6))' 2>/dev/null; then
    printf '%s\\n' "$py"; exit 0
  fi
done
exit 0
"""

_UPLOAD_IN_ONE = """trap '' PIPE
dest={dest}; part={part}; parent={parent}; py={py}; receiver={receiver}
say() {{ echo "mqi-upload: $1" >&2; }}
if [ -e "$dest" ] || [ -L "$dest" ]; then say "destination already exists: $dest"; exit 17; fi
mkdir -p -- "$parent" || {{ say "cannot create parent directory $parent"; exit 18; }}
mkdir -- "$part" || {{ say "cannot create $part"; exit 18; }}
"$py" -c "$receiver" "$part"{codec} || {{ rc=$?; rm -rf -- "$part"; exit "$rc"; }}
mv -T -n -- "$part" "$dest" || [ -e "$dest" ] ||
  {{ rm -rf -- "$part"; say "rename into place failed"; exit 23; }}
# mv -n leaves part in place (exit 0 or 1 by coreutils version) when dest appeared
[ -e "$part" ] && {{ rm -rf -- "$part"; say "destination appeared meanwhile: $dest"; exit 17; }}
exit 0
"""

_UPLOAD_COMMIT = """dest={dest}; part={part}; man={man}; nfiles={nfiles}; hasher={hasher}
say() {{ echo "mqi-upload: $1" >&2; }}
fail() {{ rm -rf -- "$part" "$man"; say "$1"; exit "$2"; }}
[ -d "$part" ] || {{ say "partial directory $part vanished"; exit 24; }}
cat > "$man" || fail "cannot store the manifest (disk full?)" 20
py=
if [ -z "${{MQI_REMOTE_NO_PYTHON:-}}" ]; then
  if [ -x /usr/bin/python3 ]; then py=/usr/bin/python3
  elif command -v python3 >/dev/null 2>&1; then py=python3; fi
fi
if [ -n "$py" ]; then
  "$py" -c "$hasher" check "$part" "$man" || fail "sha256 verification failed" 22
else
  (cd -- "$part" && sha256sum --quiet --strict -c -- "$man") >&2 ||
    fail "sha256 verification failed" 22
  got=$(find "$part" -type f -printf x | wc -c)
  [ "$got" -eq "$nfiles" ] || fail "expected $nfiles files, found $got" 22
fi
mv -T -n -- "$part" "$dest" || fail "rename into place failed" 23
[ -e "$part" ] && fail "destination appeared during the transfer: $dest" 17
rm -f -- "$man"
exit 0
"""

_DOWNLOAD_TAR = """trap '' PIPE
src={src}
cd -- "$src" || {{ echo "mqi-download: no such directory: $src" >&2; exit 30; }}
total=$(find . -type f -printf '%s\\n' | awk '{{s+=$1}} END {{printf "%d", s}}')
printf '%s\\n' "$total"
tar -c -f - . || {{ echo "mqi-download: tar failed" >&2; exit 32; }}
"""

_DOWNLOAD_MANIFEST = """src={src}; hasher={hasher}
cd -- "$src" || {{ echo "mqi-download: no such directory: $src" >&2; exit 30; }}
py=
if [ -z "${{MQI_REMOTE_NO_PYTHON:-}}" ]; then
  if [ -x /usr/bin/python3 ]; then py=/usr/bin/python3
  elif command -v python3 >/dev/null 2>&1; then py=python3; fi
fi
if [ -n "$py" ]; then exec "$py" -c "$hasher" make .; fi
{fallback}
"""


# Only the top level of base is looked at, only real directories (uploads) and files
# (their manifests) under our exact names: a symlink is neither, and rm -rf never follows
# one inside a folder, so nothing outside base can be reached. find -mmin uses the far
# side's clock (a future mtime counts as young). Line-based reading is safe: no name
# that matches the pattern holds a newline.
_LEFTOVER_SWEEP = """base={base}; young={young}
cd -P -- "$base" 2>/dev/null || exit 0
keep=$(cat)
find . -mindepth 1 -maxdepth 1 -regextype posix-extended \\
  \\( -type d -regex {dir_re} -o -type f -regex {man_re} \\) -print |
while IFS= read -r e; do
  n=${{e#./}}
  printf '%s\\n' "$keep" | grep -qxF -e "${{n%%.partial-*}}" && continue
  [ -z "$(find "$e" -mmin "-$young" -print -quit 2>/dev/null)" ] || continue
  if rm -rf -- "$e" 2>/dev/null; then echo "removed $n"; else echo "failed $n"; fi
done
exit 0
"""


def leftover_sweep_script(remote_base: str, min_age_s: float) -> str:
    """Remove the crash leftovers of uploads directly under ``remote_base``.

    Leftovers: ``<case dir>.partial-<hex>`` folders (:data:`PARTIAL_UPLOAD_PATTERN`)
    and their ``.sha256`` manifests, when nothing in them changed for ``min_age_s``.
    Stdin lists the case directory names (``mqic_case_<id>_a<attempt>``) whose
    partials are kept whatever their age. Prints ``removed <name>`` or ``failed <name>``
    per leftover; exits 0 (also when ``remote_base`` does not exist).
    """
    whole = r"\./" + PARTIAL_UPLOAD_PATTERN
    return _LEFTOVER_SWEEP.format(
        base=quote(remote_base),
        young=f"{max(min_age_s, 0.0) / 60:.3f}",
        dir_re=quote(whole),
        man_re=quote(whole + r"\.sha256"),
    )


def upload_receive_script(remote_dir: str, partial: str) -> str:
    """Refuse an existing ``remote_dir``; extract the tar on stdin into ``partial``.

    Exits 0 leaving ``partial`` for :func:`upload_commit_script`; on failure removes it.
    """
    return _UPLOAD_RECEIVE.format(
        dest=quote(remote_dir),
        part=quote(partial),
        parent=quote(posixpath.dirname(remote_dir) or "."),
    )


def upload_one_pass_script(
    remote_dir: str, partial: str, python: str, codec: tuple[str, ...] = ()
) -> str:
    """Receive, verify and commit in one command (stdin framing: far_side_receiver).

    ``codec``: the receiver's compression arguments (``("zlib",)``, ``("zstd", path)``).
    Exits 0 once ``remote_dir`` holds the verified tree; 17 when it already exists;
    on any failure ``partial`` is removed before the script exits.
    """
    return _UPLOAD_IN_ONE.format(
        dest=quote(remote_dir),
        part=quote(partial),
        parent=quote(posixpath.dirname(remote_dir) or "."),
        py=quote(python),
        receiver=quote(receiver_source()),
        codec="".join(" " + quote(word) for word in codec),
    )


@cache
def receiver_source() -> str:
    """The text of ``far_side_receiver.py`` as shipped in the package."""
    return resources.files(__package__).joinpath("far_side_receiver.py").read_text("utf-8")


def upload_commit_script(remote_dir: str, partial: str, nfiles: int) -> str:
    """Verify ``partial`` against the manifest on stdin, then rename it to ``remote_dir``.

    The manifest is kept at ``<partial>.sha256`` meanwhile. On failure both are
    removed; ``remote_dir`` only ever appears verified (``mv -n`` never replaces).
    """
    return _UPLOAD_COMMIT.format(
        dest=quote(remote_dir),
        part=quote(partial),
        man=quote(partial + ".sha256"),
        nfiles=int(nfiles),
        hasher=quote(REMOTE_HASHER_PY),
    )


def download_tar_script(remote_dir: str) -> str:
    """Print ``<total file bytes>\\n`` then a tar archive of ``remote_dir``."""
    return _DOWNLOAD_TAR.format(src=quote(remote_dir))


def download_manifest_script(remote_dir: str) -> str:
    """Print the manifest text of ``remote_dir`` (runs alongside the tar channel)."""
    return _DOWNLOAD_MANIFEST.format(
        src=quote(remote_dir), hasher=quote(REMOTE_HASHER_PY), fallback=REMOTE_MANIFEST_COMMAND
    )


def cleanup_script(partials: list[str]) -> str:
    """Remove partial upload directories and their manifests (best effort)."""
    words = " ".join(quote(p) + " " + quote(p + ".sha256") for p in partials)
    return f"rm -rf -- {words}"
