"""The one list of the system's apps. The services' settings (where the others listen by
default), `make run`, the migration command, compose checks and the tests all read it; a new
service is one line here. It lives in shared/ because running code reads it: deploy/ may import
shared/, never the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class App:
    # Short name: log prefix under `make run`, the gateway's upstream key, the env prefix.
    name: str
    package: str
    # Its port on loopback under `make run`, and inside the compose network.
    port: int
    has_database: bool = True
    # It signs requests with a private key of its own (the gateway what it forwards; a service
    # the internal calls it makes): <PREFIX>_IDENTITY_PRIVATE_KEY, its public key in
    # IDENTITY_PUBLIC_KEYS under `package`.
    signs: bool = False
    # A second port for the other services' calls (shared/internal_listener.py): its own accept
    # queue, apart from the gateway's crowd. The services call it there; the gateway the port.
    internal_port: int | None = None

    @property
    def env_prefix(self) -> str:
        return self.name.upper()

    @property
    def schema(self) -> str:
        return f"preorder_{self.name}"

    @property
    def factory(self) -> str:
        return f"{self.package}.app:create_app"

    @property
    def local_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def local_internal_url(self) -> str:
        """Where the other services call it under `make run`."""
        return f"http://127.0.0.1:{self.internal_port or self.port}"


GATEWAY = App("gateway", "gateway", 8000, has_database=False, signs=True)

SERVICES: tuple[App, ...] = (
    App("user", "user_service", 8001),
    App("product", "product_service", 8002, signs=True),
    App("order", "order_service", 8003, signs=True, internal_port=8103),
    App("payment", "payment_service", 8004, signs=True),
    App("stock", "stock_service", 8005),
    App("social", "social_service", 8006, signs=True),
)
# The apps holding an identity private key.
SIGNERS: tuple[App, ...] = tuple(app for app in (GATEWAY, *SERVICES) if app.signs)

# The card processor simulator (payment_service.simulator): a stand-in for a processor outside
# the system, so not one of the gateway's upstreams; `make run`, compose and the tests start it.
PROCESSOR_SIM = App("processor_sim", "payment_service.simulator", 8007, has_database=False)


def service(name: str) -> App:
    """A service by its short name or its package name (the processor simulator included)."""
    for app in (*SERVICES, PROCESSOR_SIM):
        if name in (app.name, app.package):
            return app
    raise KeyError(name)
