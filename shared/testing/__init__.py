"""Test helpers for real MariaDB, Redis, SMTP and service processes (no stand-ins)."""
