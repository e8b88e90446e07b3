"""Persistence: typed SQLAlchemy models, the transactional store, and its records."""

from .engine_setup import make_engine, normalize_url
from .models import Base, Case, CaseTransition, GpuResource
from .records import CaseRecord, GpuRecord, TransitionRecord, case_facts, gpu_facts
from .schema_check import check_schema
from .store import Store
from .store_claim import ClaimPlan

__all__ = [
    "Base",
    "Case",
    "CaseRecord",
    "CaseTransition",
    "ClaimPlan",
    "GpuRecord",
    "GpuResource",
    "Store",
    "TransitionRecord",
    "case_facts",
    "check_schema",
    "gpu_facts",
    "make_engine",
    "normalize_url",
]
