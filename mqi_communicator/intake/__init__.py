"""Intake: top-level folders of the watch folder become cases once they settle."""

from .scan import case_problem, is_ignored_name, is_settled, latest_change, list_candidates
from .tracker import CheckResult, SettleTracker
from .watcher import Intake

__all__ = [
    "CheckResult",
    "Intake",
    "SettleTracker",
    "case_problem",
    "is_ignored_name",
    "is_settled",
    "latest_change",
    "list_candidates",
]
