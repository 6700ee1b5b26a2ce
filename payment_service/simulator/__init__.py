"""A card processor simulator: a process of its own that speaks the processor's HTTP API
(payment_service.payments.processor_api), with the faults real processors have as settings."""
