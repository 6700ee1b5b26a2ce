"""order_service: orders and their state machine. The crowd is admitted in orders/admission.py;
an order is made in orders/creation.py (an id, a hold at stock_service, one insert), moved in
orders/transitions.py (cancel, pay, fail, expire) and settled with stock_service and
payment_service in orders/effects.py."""
