"""The bodies and paths of the services' internal APIs (under /internal, never routed by the
gateway): written once here, imported by the service that serves them and by its callers."""
