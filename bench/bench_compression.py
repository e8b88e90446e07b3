"""Compressed uploads: ``upload_tree`` against ``scp -r`` on a 100 Mbit/s link and on loopback.

Usage: python bench/bench_compression.py [--slices 300] [--repeat 2] [--rate 100mbit]
                                         [--no-loopback]

Needs root (a network namespace and tc); see bench/linklab.py. Builds a case shaped
like a real one (bench/phantom.py: a CT series of ``--slices`` 512x512 16-bit slices of
a noisy water phantom, an RT plan, three text logs; ~158 MB at 300 slices), then, on
each link (an sshd in a namespace behind a veth shaped to ``--rate`` both ways with
``tc ... tbf``; then the plain loopback sshd), measures round-robin:

- ``scp -r`` (the baseline, same run);
- ``upload_tree`` with compression ``off`` (today's stream);
- ``upload_tree`` with ``auto`` (the default: probe the link, sample the case, decide);
- ``upload_tree`` forced to ``zstd`` and to ``zlib`` (for the record).

Each ``upload_tree`` method keeps one connection, as the engine does, after one
untimed warm-up upload on it: the link probe runs then (once per connection and 10
minutes; its own time is printed apart), the codec sample is inside every timed
upload. Each result is checked against the source's manifest. Prints medians and
ratios to ``scp -r``; asserts nothing (targets: auto >= 1.8x scp on the slow
link; auto not slower than ``off`` on loopback).
"""

from __future__ import annotations

import argparse
import contextlib
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
sys.path.insert(0, str(ROOT / "bench"))

from linklab import Sshd, limited_link, require_link_tools, ssh_check, sshd  # noqa: E402

from mqi_communicator.remote.transfer.link_probe import probe_link, probe_script  # noqa: E402
from mqi_communicator.remote.transfer.manifest import manifest_of_files  # noqa: E402
from mqi_communicator.remote.transfer.tarstream import enumerate_tree  # noqa: E402
from mqi_communicator.remote.transfer.upload_codec import CodecChoice  # noqa: E402
from mqi_communicator.remote.transport.ssh import SshTransport  # noqa: E402


def digest(path: Path) -> str:
    tree = enumerate_tree(path)
    return manifest_of_files((f.rel, f.path) for f in tree.files).digest()


def measure(
    server: Sshd, src: Path, remote: Path, repeat: int
) -> tuple[dict[str, float], dict[str, CodecChoice]]:
    """Median seconds per method, and the last codec choice of each upload_tree method."""
    src_digest = digest(src)
    dst = remote / "dst"
    scp = ["scp", "-q", "-r", "-P", str(server.port), *server.ssh_opts()]
    choices: dict[str, CodecChoice] = {}
    kept: list[SshTransport] = []

    def ours(setting: str) -> Callable[[], None]:
        t = SshTransport(
            "bench",
            server.addr,
            port=server.port,
            user="root",
            key_filename=server.key,
            known_hosts=server.known_hosts,
            compression=setting,  # type: ignore[arg-type]
        )
        kept.append(t)
        t.upload_tree(src, str(dst))  # warm-up: connects, probes python3 and the link
        shutil.rmtree(dst)

        def go() -> None:
            t.upload_tree(src, str(dst))
            choices[f"upload_tree {setting}"] = t.codecs.last

        return go

    methods: list[tuple[str, Callable[[], object]]] = [
        (
            "scp -r",
            lambda: subprocess.run([*scp, str(src), f"root@{server.addr}:{dst}"], check=True),
        ),
        ("upload_tree off", ours("off")),
        ("upload_tree auto", ours("auto")),
        ("upload_tree zstd", ours("zstd")),
        ("upload_tree zlib", ours("zlib")),
    ]
    samples: dict[str, list[float]] = {name: [] for name, _ in methods}
    for _ in range(repeat):
        for name, fn in methods:  # round-robin: load from elsewhere hits all alike
            shutil.rmtree(dst, ignore_errors=True)
            os.sync()
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
            if digest(dst) != src_digest:
                raise SystemExit(f"{name}: the result differs from the source")
    shutil.rmtree(dst, ignore_errors=True)
    probe_s = time_probe(kept[0])
    print(f"(link probe on a kept connection: {probe_s:.2f} s, once per connection and 10 min)")
    for t in kept:
        t.close()
    return {name: statistics.median(v) for name, v in samples.items()}, choices


def time_probe(t: SshTransport) -> float:
    transport = t._transport()  # white-box: the kept connection
    t0 = time.perf_counter()
    probe_link(transport, probe_script(), where="bench")
    return time.perf_counter() - t0


def report(title: str, mb: float, secs: dict[str, float], choices: dict[str, CodecChoice]) -> None:
    base = secs["scp -r"]
    print(f"\n{title}")
    print(f"{'method':20} {'seconds':>8} {'MB/s':>7} {'x scp -r':>9}  codec (link, ratio)")
    for name, s in secs.items():
        c = choices.get(name)
        how = ""
        if c is not None:
            link = f"{c.link_bps / 1e6:.0f} MB/s" if c.link_bps else "no probe"
            ratio = f", ratio {c.measures[0].ratio:.2f}" if c.measures else ""
            how = f"{c.codec} ({link}{ratio})"
        print(f"{name:20} {s:8.2f} {mb / s:7.1f} {base / s:9.2f}  {how}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--rate", default="100mbit")
    ap.add_argument("--no-loopback", action="store_true")
    args = ap.parse_args()
    require_link_tools()
    try:
        from phantom import make_case
    except ImportError as err:  # numpy
        raise SystemExit(f"needs the bench extra: pip install -e '.[bench]' ({err})") from err

    base = Path(tempfile.mkdtemp(prefix="mqi-bench-comp-"))
    try:
        src = base / "case"
        nbytes = make_case(src, args.slices)
        nfiles = sum(1 for p in src.rglob("*") if p.is_file())
        mb = nbytes / 1e6
        print(f"case: {nfiles} files, {mb:.0f} MB (phantom CT, plan, logs); repeat {args.repeat}")
        (base / "remote").mkdir()
        with contextlib.ExitStack() as stack:
            link = stack.enter_context(limited_link(args.rate))
            server = stack.enter_context(sshd(base / "conf-ns", link.ns_addr, link.netns))
            ssh_check(server)
            secs, choices = measure(server, src, base / "remote", args.repeat)
        report(f"link shaped to {args.rate} both ways (tc tbf, netns)", mb, secs, choices)
        if not args.no_loopback:
            with sshd(base / "conf-lo") as server:
                ssh_check(server)
                secs, choices = measure(server, src, base / "remote", args.repeat)
            report("plain loopback (no limit)", mb, secs, choices)
            print(
                f"\nloopback: auto / off = {secs['upload_tree auto'] / secs['upload_tree off']:.2f}"
                " (time; <= 1.00 means not slower than today)"
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
