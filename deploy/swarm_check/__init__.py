"""`make swarm-check`: the system's images on Docker Swarm with replicas, a sale run against it
while replicas die and scale, and the sale checker's verdict.

    python -m deploy.swarm_check [--stack NAME] [--buyers N] [--stock N] [--keep]
        [--no-faults] [--max-deciding N] [--settle SECONDS]

It starts (and installs) a Docker engine as `make compose-check` does and builds the same images
(deploy/compose_check/: the app from deploy/Dockerfile, stand-ins where no registry answers),
makes the engine a single-node swarm if it is not one, and deploys docker-compose.yml as a stack
of its own name (deploy/swarm_check/stack.py): gateway x1 on a host-mode port, product, order,
payment and stock x2, every service `endpoint_mode: dnsrr` (swarm's virtual IPs need IPVS, which
these machines lack). Then `make load --host` runs a sale against the gateway; once orders
arrive, one order and one stock task are killed (`docker kill`) and order-service is scaled
from 2 to 3. A request in flight on a killed task gets no answer (the gateway says 502): its
buyer retries it with the same Idempotency-Key, as API.md tells clients to
(`--idempotent-retries`), and the check prints how many attempts that took. PASS needs the
checker's PASS (no unit oversold or lost, orders, holds and payments agreeing, no buyer's final
answer a 5xx) and the scaled replicas running. `--no-faults` runs the same sale with nothing
killed or scaled; `--max-deciding` and `--settle` set the line's ORDER_LINE_MAX_DECIDING and
ORDER_LINE_SETTLE_SECONDS for the stack (docs/replicas.md says why 8 and 0.5 here). The
gateway's, order's and stock's task logs are kept beside the load report. The stack, its
network and (if this check made it) the swarm are removed at the end; an engine it started is
stopped again.
"""
