"""Persistence: typed SQLAlchemy models, the transactional store, and its records."""

from .effects import CANCEL_REASON, case_effects, gpu_effects
from .engine_setup import make_engine, normalize_url
from .models import Base, Case, CaseTransition, GpuResource
from .records import CaseRecord, GpuRecord, TransitionRecord
from .schema_check import check_schema
from .store import Store
from .store_claim import ClaimPlan

__all__ = [
    "CANCEL_REASON",
    "Base",
    "Case",
    "CaseRecord",
    "CaseTransition",
    "ClaimPlan",
    "GpuRecord",
    "GpuResource",
    "Store",
    "TransitionRecord",
    "case_effects",
    "check_schema",
    "gpu_effects",
    "make_engine",
    "normalize_url",
]
