"""The job-state vocabulary the decisions speak: what a poll can say about one job.

Scheduler adapters (``remote/``) map their tools' answers onto it; the pure decisions
(``decide.py``) read it. It lives here so the core depends on no adapter.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["JobState"]


class JobState(StrEnum):
    """What a poll learned about one job."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    KILLED = "killed"
    #: The scheduler answered and the job (with our label) is not there.
    ABSENT = "absent"
    #: We could not tell (garbage output); never treated as terminal.
    UNKNOWN = "unknown"
