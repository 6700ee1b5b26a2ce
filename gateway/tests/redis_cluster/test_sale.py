"""The sale through the gateway with every app on the Redis Cluster: holds, payment, a declined
card, idempotency keys, 300 orders at once for 30 units, a per-user limit under a crowd."""

from __future__ import annotations

from gateway.tests.test_e2e_orders import (
    people,
    test_300_orders_at_once_from_one_buyer_make_one_order_and_keep_nothing_more,
    test_a_declined_card_fails_the_order_and_returns_its_stock,
    test_a_limit_of_one_holds_when_each_buyer_sends_three_at_once,
    test_an_order_holds_stock_until_paid_and_each_side_is_its_owners,
    test_idempotency_key_replays_refuses_reuse_and_runs_once,
)

__all__ = [
    "people",
    "test_300_orders_at_once_from_one_buyer_make_one_order_and_keep_nothing_more",
    "test_a_declined_card_fails_the_order_and_returns_its_stock",
    "test_a_limit_of_one_holds_when_each_buyer_sends_three_at_once",
    "test_an_order_holds_stock_until_paid_and_each_side_is_its_owners",
    "test_idempotency_key_replays_refuses_reuse_and_runs_once",
]
