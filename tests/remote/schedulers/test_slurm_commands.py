"""The pure Slurm command builders: options, quoting, and the filename-pattern quirk."""

from __future__ import annotations

import shlex

import pytest

from mqi_communicator.remote.protocol import GpuBinding, JobRef, JobSpec
from mqi_communicator.remote.schedulers.slurm.commands import kill_script, poll_command, sbatch_argv
from mqi_communicator.remote.schedulers.slurm.scheduler import SlurmScheduler
from mqi_communicator.remote.transport.local import LocalTransport

SPEC = JobSpec(
    label="mqic_case_1_a1", remote_dir="/data/c1", command=["moqui", "--x"], gpu=GpuBinding("g")
)


def _opts(argv: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)


def test_binding_overrides_constructor_defaults() -> None:
    sched = SlurmScheduler(LocalTransport(), partition="p0", default_gres="gpu:1")
    plain = _opts(sched.sbatch_argv(SPEC))
    assert (plain["partition"], plain["gres"]) == ("p0", "gpu:1")
    bound = JobSpec(
        **{**SPEC.__dict__, "gpu": GpuBinding("g", slurm_partition="p1", slurm_gres="gpu:a100:1")}
    )
    opts = _opts(sched.sbatch_argv(bound))
    assert (opts["partition"], opts["gres"]) == ("p1", "gpu:a100:1")
    assert "partition" not in _opts(SlurmScheduler(LocalTransport()).sbatch_argv(SPEC))


@pytest.mark.parametrize(
    ("seconds", "arg"), [(1, "0:01"), (59, "0:59"), (60, "1:00"), (3725, "62:05")]
)
def test_time_limit(seconds: int, arg: str) -> None:
    spec = JobSpec(**{**SPEC.__dict__, "time_limit_s": seconds})
    assert _opts(sbatch_argv(spec, partition=None, gres=None))["time"] == arg


@pytest.mark.parametrize(
    ("remote_dir", "output"),
    [
        ("/data/c1", "/data/c1.mqi/slurm-%j.out"),
        ("/data/a%jb/c1", "/data/a%%jb/c1.mqi/slurm-%j.out"),
        ("/data/a\\b/c1", "/dev/null"),
    ],
)
def test_output_path_survives_slurm_patterns(remote_dir: str, output: str) -> None:
    spec = JobSpec(**{**SPEC.__dict__, "remote_dir": remote_dir})
    opts = _opts(sbatch_argv(spec, partition=None, gres=None))
    assert opts["output"] == output
    assert opts["chdir"] == remote_dir


def test_cuda_devices_only_without_gres() -> None:
    spec = JobSpec(**{**SPEC.__dict__, "gpu": GpuBinding("g", cuda_devices="2")})
    assert "CUDA_VISIBLE_DEVICES=2" in _opts(sbatch_argv(spec, partition=None, gres=None))["wrap"]
    assert "CUDA_VISIBLE" not in _opts(sbatch_argv(spec, partition=None, gres="gpu:1"))["wrap"]


def test_wrap_is_one_quoted_shell_line() -> None:
    hostile = JobSpec(**{**SPEC.__dict__, "remote_dir": "/d/$(rm -rf ~) 'x\"", "env": {"A": "b c"}})
    wrap = _opts(sbatch_argv(hostile, partition=None, gres=None))["wrap"]
    words = shlex.split(wrap.split("; exec ", 1)[1])
    assert words[:2] == ["env", "A=b c"]
    assert words[3] == "/d/$(rm -rf ~) 'x\".mqi/wrapper.sh"
    assert words[-2:] == ["moqui", "--x"]


def test_poll_command_asks_only_plain_ids_once() -> None:
    refs = [JobRef(i, "l", f"/d/{n}") for n, i in enumerate(["3", "1", "3", "", "x;rm"])]
    command = poll_command(refs)
    assert "-j 1,3;" in command
    assert "rm" not in command.split(";")[0]


def test_kill_script_quotes_the_label() -> None:
    script = kill_script(JobRef("5", "a'b", "/d/$(x)"), 10)
    assert "--name='a'\"'\"'b'" in script
    assert "'/d/$(x)/.mqi'/exit" in script, "a job without a token: its in-case markers"
    tokened = kill_script(JobRef("5", "a'b", "/d/$(x)", token="t" * 32), 10)
    assert "--name='a'\"'\"'b'" in tokened and "'/d/$(x).mqi'" in tokened
    assert "t" * 32 not in tokened, "the token comes on stdin, never on a command line"
