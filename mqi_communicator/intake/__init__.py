"""Intake: top-level folders of the watch folder become cases once they settle."""

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr
from .fingerprint import content_changed, fingerprint
from .refusals import RefusalLog
from .scan import case_problem, is_ignored_name, is_settled, latest_change, list_candidates
from .tracker import CheckResult, Seen, SettleTracker

if TYPE_CHECKING:
    from .watcher import Intake


# The watcher needs watchdog; commands that only check a folder do not load it.
__getattr__ = lazy_getattr(__name__, {"Intake": ".watcher"})

__all__ = [
    "CheckResult",
    "Intake",
    "RefusalLog",
    "Seen",
    "SettleTracker",
    "case_problem",
    "content_changed",
    "fingerprint",
    "is_ignored_name",
    "is_settled",
    "latest_change",
    "list_candidates",
]
