"""gateway: verifies access tokens, strips client identity headers and forwards to the owning service."""
