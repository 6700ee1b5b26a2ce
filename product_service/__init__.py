"""product_service: the product catalogue and sale windows; registers each product with stock_service."""
