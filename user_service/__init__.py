"""user_service: accounts, email verification, login sessions and the access-token signing keys."""
