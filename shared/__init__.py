"""Toolkit shared by every service: configuration arrives as arguments, nothing here imports a service."""
