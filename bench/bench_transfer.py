"""Transfer and latency benchmark against a loopback OpenSSH sshd.

Usage: python bench/bench_transfer.py [--scale 1.0] [--repeat 3] [--port 22322]

Starts its own sshd (tests/infra/sshd_up.sh), builds a DICOM-like case (at scale 1.0:
2000 slices of ~300 KB plus 5 MB-sized files, 2005 files, ~608 MB of random bytes) and
measures, in the same run: local ``cp -r`` (the ceiling), ``scp -r``, an OpenSSH tar
pipe, a bare tar stream over one paramiko channel (unverified), our ``upload_tree``;
``scp -r`` download vs our ``download_tree``; and the latency of a trivial ``run()`` on
the kept connection vs a fresh ``ssh`` process. Prints
medians and ratios to ``scp -r``; asserts nothing (targets: upload >= 1.8x, download
>= 1.5x). Our transfers are verified (sha256 on both sides) as part of the timing.
``upload_tree`` is measured both ways it can run: one command (far-side python3) and
two commands (``MQI_REMOTE_NO_PYTHON=1``: ``tar -x``, then ``sha256sum -c``).

Every sample starts after ``sync`` so the previous sample's dirty pages are not
written back on this one's time. On loopback both "sides" share this machine's CPUs,
so a transfer here is bounded by the sum of both sides' CPU time, unlike a real link.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mqi_communicator.remote.ssh.exec import send_all  # noqa: E402
from mqi_communicator.remote.transfer.manifest import manifest_of_files  # noqa: E402
from mqi_communicator.remote.transfer.tarstream import enumerate_tree, iter_tar_chunks  # noqa: E402
from mqi_communicator.remote.transport.ssh import SshTransport  # noqa: E402

UP = ROOT / "tests" / "infra" / "sshd_up.sh"


def make_case(root: Path, scale: float) -> int:
    (root / "CT").mkdir(parents=True)
    (root / "RTPLAN").mkdir()
    total = 0
    for i in range(max(1, round(2000 * scale))):
        size = 300_000 + (i % 7) * 64
        (root / "CT" / f"CT.1.2.840.{i:05d}.dcm").write_bytes(os.urandom(size))
        total += size
    for i in range(5):
        size = 1_600_000 + i * 1000
        (root / "RTPLAN" / f"RTDOSE_{i}.dcm").write_bytes(os.urandom(size))
        total += size
    return total


def digest(path: Path) -> str:
    tree = enumerate_tree(path)
    return manifest_of_files((f.rel, f.path) for f in tree.files).digest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--port", type=int, default=int(os.environ.get("MQI_BENCH_SSHD_PORT", "22322")))
    args = ap.parse_args()

    base = Path(tempfile.mkdtemp(prefix="mqi-bench-"))
    conf = base / "conf"
    pidfile = conf / "sshd.pid"
    try:
        subprocess.run(["bash", str(UP), str(conf), str(args.port)], check=True)
        key, known = conf / "id_ed25519", conf / "known_hosts"
        ssh_opts = [
            "-i",
            str(key),
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={known}",
        ]
        ssh = ["ssh", "-p", str(args.port), *ssh_opts, "root@127.0.0.1"]
        scp = ["scp", "-q", "-r", "-P", str(args.port), *ssh_opts]

        src = base / "case"
        nbytes = make_case(src, args.scale)
        nfiles = sum(1 for p in src.rglob("*") if p.is_file())
        src_digest = digest(src)
        mb = nbytes / 1e6
        print(
            f"case: {nfiles} files, {mb:.0f} MB; repeat {args.repeat} (median); "
            f"sshd on 127.0.0.1:{args.port}; {os.cpu_count()} CPUs"
        )
        remote = base / "remote"
        remote.mkdir()
        dst = remote / "dst"

        back = base / "back"
        dl_src = remote / "dl_src"  # what downloads read: a plain copy of the case
        subprocess.run(["cp", "-r", str(src), str(dl_src)], check=True)

        t = SshTransport(
            "bench", "127.0.0.1", port=args.port, user="root", key_filename=key, known_hosts=known
        )
        t.run(["true"], timeout=30)
        t2 = SshTransport(
            "bench",
            "127.0.0.1",
            port=args.port,
            user="root",
            key_filename=key,
            known_hosts=known,
            env={"MQI_REMOTE_NO_PYTHON": "1"},
        )

        def sh(cmd: str) -> Callable[[], object]:
            return lambda: subprocess.run(cmd, shell=True, check=True)

        def bare_channel() -> None:
            # What the issue calls "a tar stream over one paramiko channel": no hashing.
            conn = t._conn  # white-box: the kept connection's transport
            assert conn is not None and conn.transport is not None
            chan = conn.transport.open_session()
            chan.exec_command(f"mkdir -p {dst} && cd {dst} && tar -xf -")
            for chunk in iter_tar_chunks(enumerate_tree(src)):
                send_all(chan, chunk)
            chan.shutdown_write()
            assert chan.recv_exit_status() == 0
            chan.close()

        q = " ".join(scp)
        methods: list[tuple[str, Path, Callable[[], object]]] = [
            ("local cp -r (ceiling)", dst, sh(f"cp -r {src} {dst}")),
            ("scp -r upload", dst, sh(f"{q} {src} root@127.0.0.1:{dst}")),
            (
                "OpenSSH tar pipe upload",
                dst,
                sh(
                    f"tar -C {src} -cf - . | {' '.join(ssh)} 'mkdir -p {dst} && tar -C {dst} -xf -'"
                ),
            ),
            ("tar over paramiko channel", dst, bare_channel),
            ("upload_tree (verified)", dst, lambda: t.upload_tree(src, str(dst))),
            ("upload_tree, 2 commands", dst, lambda: t2.upload_tree(src, str(dst))),
            ("scp -r download", back, sh(f"{q} root@127.0.0.1:{dl_src} {back}")),
            ("download_tree (verified)", back, lambda: t.download_tree(str(dl_src), back)),
        ]
        # Round-robin over the methods so load changes from other processes hit all alike.
        samples: dict[str, list[float]] = {name: [] for name, _, _ in methods}
        for _ in range(args.repeat):
            for name, out, fn in methods:
                shutil.rmtree(out, ignore_errors=True)
                os.sync()
                t0 = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t0)
                if "_tree" in name:
                    assert digest(out) == src_digest, f"{name}: result differs from source"
        rows = [(name, statistics.median(v)) for name, v in samples.items()]

        scp_up = dict(rows)["scp -r upload"]
        scp_down = dict(rows)["scp -r download"]
        print(f"\n{'method':28} {'seconds':>8} {'MB/s':>8} {'x scp -r':>9}")
        for name, secs in rows:
            ref = scp_down if "download" in name else scp_up
            print(f"{name:28} {secs:8.2f} {mb / secs:8.0f} {ref / secs:9.2f}")

        n = 20
        kept = []
        for _ in range(n):
            t0 = time.perf_counter()
            t.run(["true"], timeout=30)
            kept.append(time.perf_counter() - t0)
        fresh = []
        for _ in range(max(3, n // 4)):
            t0 = time.perf_counter()
            subprocess.run([*ssh, "true"], check=True)
            fresh.append(time.perf_counter() - t0)
        fabric_run = []
        conn = t._conn  # white-box: Fabric's own run() on the same kept connection
        assert conn is not None
        for _ in range(max(3, n // 4)):
            t0 = time.perf_counter()
            conn.run("true", hide=True)
            fabric_run.append(time.perf_counter() - t0)
        fr = statistics.median(fabric_run) * 1000
        k, f = statistics.median(kept) * 1000, statistics.median(fresh) * 1000
        print(
            f"\nlatency of a trivial command: kept connection run() {k:.1f} ms, "
            f"Fabric run() on it {fr:.1f} ms, fresh ssh process {f:.1f} ms ({f / k:.1f}x)"
        )
        print("(both include the remote login shell's startup, e.g. ~/.bashrc)")
        t.close()
        t2.close()
    finally:
        if pidfile.exists():
            subprocess.run(["kill", pidfile.read_text().split()[0]], check=False)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
