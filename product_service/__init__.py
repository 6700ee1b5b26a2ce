"""product_service: the product catalogue and sale windows (domain arrives in a later issue)."""
