"""The fault boundary's pure parts: which errors wait, and when a case is given up."""

from __future__ import annotations

import errno

import pytest

from mqi_communicator.engine.fault import error_text, storage_errno
from mqi_communicator.errors import TransferError
from mqi_communicator.statemachine import CaseFacts, CaseState
from mqi_communicator.statemachine.decide import Apply, Policy, Wait
from mqi_communicator.statemachine.faults import decide_local_failure


def _wrapped(code: int) -> TransferError:
    try:
        try:
            raise OSError(code, "x")
        except OSError as err:
            raise TransferError("copy failed") from err
    except TransferError as outer:
        return outer


@pytest.mark.parametrize(
    "code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM]
)
def test_disk_full_like_errors_wait_even_when_wrapped(code: int) -> None:
    assert storage_errno(OSError(code, "x")) == code
    assert storage_errno(_wrapped(code)) == code


@pytest.mark.parametrize("code", [errno.ENAMETOOLONG, errno.EIO, errno.EEXIST])
def test_other_local_errors_count(code: int) -> None:
    assert storage_errno(_wrapped(code)) is None
    assert storage_errno(ValueError("a bug")) is None


def test_error_text_is_one_bounded_line() -> None:
    text = error_text(ValueError("two\nlines\x1b[31m" + "x" * 1000))
    assert "\n" not in text and len(text) <= 500 and text.startswith("ValueError: two lines")


def _view(state: CaseState, failures: int, gpu: str | None) -> CaseFacts:
    return CaseFacts(1, state, "L", 1, local_failures=failures, gpu_name=gpu)


def test_a_case_is_given_up_after_the_configured_local_failures() -> None:
    policy = Policy(max_local_failures=3)
    assert isinstance(
        decide_local_failure(_view(CaseState.RETRIEVING, 1, None), "e", "r", policy), Wait
    )
    step = decide_local_failure(_view(CaseState.RETRIEVING, 2, None), "boom", "retrieving", policy)
    assert isinstance(step, Apply) and step.case_trigger == "fail" and step.gpu_trigger is None
    assert step.failure_reason == "local error while retrieving, 3 times in a row: boom"


def test_a_case_holding_a_gpu_fails_with_it_quarantined_never_freed() -> None:
    step = decide_local_failure(
        _view(CaseState.RUNNING, 4, "h/g0"), "boom", "observing", Policy(max_local_failures=5)
    )
    assert isinstance(step, Apply) and step.gpu_trigger == "quarantine"
