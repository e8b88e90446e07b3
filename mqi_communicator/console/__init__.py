"""The operator's terminal console: a database snapshot, its rendering, and key input.

:func:`take_snapshot` reads the database only (never the engine's lock), so ``top`` runs
beside a running engine on SQLite and PostgreSQL.
"""

from .snapshot import CaseRow, GpuRow, HostRow, Snapshot, host_health, take_snapshot

__all__ = ["CaseRow", "GpuRow", "HostRow", "Snapshot", "host_health", "take_snapshot"]
