"""``engine.transfers``: how many uploads and downloads run beside the tick at once."""

from __future__ import annotations

from pydantic import Field, model_validator

from .validation import _Strict

__all__ = ["TransfersConfig"]


class TransfersConfig(_Strict):
    """The transfer pool's limits (engine/transfers.py).

    An upload (+ its submit) or a download runs in a thread beside the tick, so polls,
    timeouts, kills and claims go on meanwhile. ``max_parallel`` bounds the transfers
    whose bytes flow over all hosts, ``max_per_host`` a host's uploads, and its
    downloads separately (one link's bandwidth is shared by the transfers going its way;
    an upload's submit, after its bytes, holds no slot).
    ``max_parallel: 0`` runs every transfer inline, in the tick, blocking it (the
    behaviour before the pool; a benchmark's baseline).
    """

    max_parallel: int = Field(default=4, ge=0, le=64)
    max_per_host: int = Field(default=2, ge=1, le=64)

    @model_validator(mode="after")
    def _per_host_within_total(self) -> TransfersConfig:
        if self.max_parallel and self.max_per_host > self.max_parallel:
            raise ValueError(
                f"engine.transfers.max_per_host ({self.max_per_host}) exceeds "
                f"engine.transfers.max_parallel ({self.max_parallel}); expected at most that"
            )
        return self
