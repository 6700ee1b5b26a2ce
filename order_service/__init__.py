"""order_service: orders and their state machine (domain arrives in a later issue)."""
