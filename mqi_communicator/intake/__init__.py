"""Intake: top-level folders of the watch folder become cases once they settle."""

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr
from .scan import case_problem, is_ignored_name, is_settled, latest_change, list_candidates
from .tracker import CheckResult, SettleTracker

if TYPE_CHECKING:
    from .watcher import Intake


# The watcher needs watchdog; commands that only check a folder do not load it.
__getattr__ = lazy_getattr(__name__, {"Intake": ".watcher"})

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
