"""Fixtures for the remote adapters: stand-in Pueue daemons (v3 and v4 shapes), and the
same host reached directly and over the loopback sshd."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from mqi_communicator.remote.protocol import JobRef, JobStatus, Scheduler, Transport
from mqi_communicator.remote.transport.local import LocalTransport
from tests.infra.pueue import PueueStandin, pueue_daemon


@pytest.fixture(params=["local", pytest.param("ssh", marks=pytest.mark.ssh)])
def job_transport(request: pytest.FixtureRequest) -> Iterator[Transport]:
    """This host, through LocalTransport and through the loopback sshd."""
    if request.param == "local":
        yield LocalTransport()
    else:
        yield request.getfixturevalue("ssh_transport")


def poll_until(
    sched: Scheduler, ref: JobRef, done: Callable[[JobStatus], bool], timeout: float = 20
) -> JobStatus:
    """Poll ``ref`` until ``done(status)`` or ``timeout``; returns the last status."""
    deadline = time.monotonic() + timeout
    while True:
        status = sched.poll([ref])[ref]
        if done(status) or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


@pytest.fixture(params=[3, 4], ids=["pueue3", "pueue4"])
def pueue(request: pytest.FixtureRequest) -> Iterator[PueueStandin]:
    """A running stand-in pueued, torn down with every task group it spawned."""
    with pueue_daemon(request.param) as standin:
        yield standin
