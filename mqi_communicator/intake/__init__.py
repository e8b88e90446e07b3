"""Intake: top-level folders of the watch folder become cases once they settle."""

from typing import TYPE_CHECKING, Any

from .fingerprint import content_changed, fingerprint
from .refusals import RefusalLog
from .scan import case_problem, is_ignored_name, is_settled, latest_change, list_candidates
from .tracker import CheckResult, Seen, SettleTracker

if TYPE_CHECKING:
    from .watcher import Intake


def __getattr__(name: str) -> Any:
    # The watcher needs watchdog; commands that only check a folder do not load it.
    if name != "Intake":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from .watcher import Intake

    globals()["Intake"] = Intake
    return Intake


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
