"""payment_service: payments of orders through the simulated card processor, their outcome
handed to order_service through an outbox, and refunds of cancelled paid orders."""
