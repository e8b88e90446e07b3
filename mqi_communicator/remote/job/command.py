"""The command line a job's wrapper runs: the spec's command with its environment.

Shared by the schedulers that start the wrapper themselves (local, Pueue); Slurm
passes the environment through ``sbatch --wrap`` instead.
"""

from __future__ import annotations

from mqi_communicator.remote.protocol import JobSpec

__all__ = ["job_command"]


def job_command(spec: JobSpec) -> list[str]:
    """``spec.command`` prefixed with ``env`` for ``spec.env`` and the GPU's CUDA devices."""
    env = dict(spec.env)
    if spec.gpu.cuda_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = spec.gpu.cuda_devices
    if not env:
        return list(spec.command)
    return ["env", *(f"{k}={v}" for k, v in env.items()), *spec.command]
