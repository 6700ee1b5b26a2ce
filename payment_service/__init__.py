"""payment_service: payments through the simulated card processor (domain arrives in a later issue)."""
