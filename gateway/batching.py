"""The gateway's batched Redis questions (revocation, rate limits) share shared/batching.py's
FlushPerTurn with order_service's line."""

from __future__ import annotations

from shared.batching import FlushPerTurn

__all__ = ["FlushPerTurn"]
