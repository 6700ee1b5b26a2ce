#!/bin/sh
# Container entry point for every app: `entrypoint.sh <package> <port>`.
# A database service applies its own Alembic chain first (under the schema's named lock, so
# replicas starting together take turns; MIGRATE_ON_START=0 leaves it to a separate step, as the
# Kubernetes Job does); then uvicorn replaces this shell (exec),
# so the app runs as PID 1 and receives docker's SIGTERM itself. --no-proxy-headers: the gateway
# resolves client addresses itself (GATEWAY_TRUSTED_PROXY_NETWORKS); uvicorn must not rewrite them.
# --no-server-header: no `server: uvicorn` telling an attacker which bugs to try.
# --backlog 4096: a sale's opening connects thousands at once; twice uvicorn's default (Linux caps
# it at net.core.somaxconn, 4096 by default), so fewer of them wait for a SYN retry.
set -eu

service="$1"
port="$2"

if [ "$service" != "gateway" ] && [ "${MIGRATE_ON_START:-1}" != "0" ]; then
    python -m deploy.migrate "$service"
fi

exec python -m uvicorn --factory "${service}.app:create_app" \
    --host 0.0.0.0 --port "$port" --no-access-log --no-proxy-headers --no-server-header --backlog 4096 --timeout-graceful-shutdown 10
