"""Reading a job log's tail and its new bytes, locally and over the loopback sshd."""

from __future__ import annotations

from pathlib import Path

import pytest

from mqi_communicator.errors import RemoteCommandError
from mqi_communicator.remote.job.log import job_log_path, parse_read, read_job_log
from mqi_communicator.remote.protocol import Transport

LOG = b"line 1\nline 2\n\xff\xfe not utf-8\nline 4\n"


def test_the_path_is_the_wrappers_log() -> None:
    assert job_log_path("/base/mqic_case_3_a1/") == "/base/mqic_case_3_a1.mqi/job.log"
    # attempts claimed before tokens existed keep their markers inside the case folder
    assert job_log_path("/base/c_a1", legacy=True) == "/base/c_a1/.mqi/job.log"


def test_tail_new_bytes_truncation_and_absence(job_transport: Transport, tmp_path: Path) -> None:
    # Quoting holds: a name that is shell code must be read as a name, or nothing is found.
    case_dir = tmp_path / "case 'x' $(touch pwned)"
    assert not read_job_log(job_transport, str(case_dir)).exists
    log = Path(job_log_path(str(case_dir)))
    log.parent.mkdir(parents=True)
    log.write_bytes(LOG)

    tail = read_job_log(job_transport, str(case_dir), lines=2)
    assert tail.data == b"\xff\xfe not utf-8\nline 4\n"  # any bytes arrive intact
    assert (tail.size, tail.end) == (len(LOG), len(LOG))
    assert "line 4" in tail.text

    assert read_job_log(job_transport, str(case_dir), offset=tail.end).data == b""
    with log.open("ab") as f:
        f.write(b"line 5\n")
    new = read_job_log(job_transport, str(case_dir), offset=tail.end)
    assert new.data == b"line 5\n" and new.start == len(LOG)

    part = read_job_log(job_transport, str(case_dir), offset=0, max_bytes=4)
    assert part.data == b"line" and part.end == 4 < part.size  # the rest comes next read

    log.write_bytes(b"new\n")  # rotated: shorter than where we were
    again = read_job_log(job_transport, str(case_dir), offset=new.end)
    assert again.start == 0 and again.data == b"new\n"


@pytest.mark.parametrize(
    "garbage",
    ["", "@mqi-log size x\n@mqi-log data\n", "@mqi-log size 3\n@mqi-log data\n!!!\n"],
)
def test_unexpected_answers_are_errors(garbage: str) -> None:
    with pytest.raises(RemoteCommandError):
        parse_read(garbage, tail=True)
