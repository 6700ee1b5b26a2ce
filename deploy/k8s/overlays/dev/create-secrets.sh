#!/usr/bin/env bash
# The dev overlay's Secrets, with fresh random passwords and keys, created straight in the cluster
# (nothing is written to a file): MySQL's root password, Redis's password, each app's database and
# Redis URLs, the identity keys (a private key for each app that signs, every public key) and
# user_service's JWT key. Run once before the first
# `kubectl apply -k deploy/k8s/overlays/dev`; an existing Secret is left as it is, so tokens
# and data survive a second run. Needs kubectl (pointed at the dev cluster) and openssl.
set -euo pipefail

namespace=preorder
kubectl get namespace "$namespace" >/dev/null 2>&1 || kubectl create namespace "$namespace"

random() { openssl rand -hex 24; }
b64url() { base64 | tr '+/' '-_' | tr -d '=\n'; }

# An Ed25519 key pair as the apps read it (shared/identity_keys.py): the raw 32-byte keys in
# base64url, the last 32 bytes of OpenSSL's DER forms.
declare -A identity_private identity_public
for signer in gateway product order payment social; do
    der=$(openssl genpkey -algorithm ed25519 -outform DER | base64 | tr -d '\n')
    identity_private[$signer]=$(echo "$der" | base64 -d | tail -c 32 | b64url)
    identity_public[$signer]=$(echo "$der" | base64 -d | openssl pkey -inform DER -pubout \
        -outform DER | tail -c 32 | b64url)
done
public_keys=$(printf '{"gateway":["%s"],"product_service":["%s"],"order_service":["%s"],"payment_service":["%s"],"social_service":["%s"]}' \
    "${identity_public[gateway]}" "${identity_public[product]}" "${identity_public[order]}" \
    "${identity_public[payment]}" "${identity_public[social]}")

create() {  # create <name> --from-literal=... ...
    local name=$1
    shift
    if kubectl -n "$namespace" get secret "$name" >/dev/null 2>&1; then
        echo "secret/$name exists, kept"
    else
        kubectl -n "$namespace" create secret generic "$name" "$@"
    fi
}

mysql_password=$(kubectl -n "$namespace" get secret preorder-dev-mysql \
    -o jsonpath='{.data.root-password}' 2>/dev/null | base64 -d || true)
redis_password=$(kubectl -n "$namespace" get secret preorder-dev-redis \
    -o jsonpath='{.data.password}' 2>/dev/null | base64 -d || true)
mysql_password=${mysql_password:-$(random)}
redis_password=${redis_password:-$(random)}

# Each app's own Redis user (shared/redis_acl.py; the dev Redis creates them): its password.
declare -A redis_passwords
for app in gateway user product order payment stock social; do
    existing=$(kubectl -n "$namespace" get secret preorder-dev-redis \
        -o jsonpath="{.data.$app-password}" 2>/dev/null | base64 -d || true)
    redis_passwords[$app]=${existing:-$(random)}
done

create preorder-dev-mysql --from-literal=root-password="$mysql_password"
create preorder-dev-redis --from-literal=password="$redis_password" \
    $(for app in gateway user product order payment stock social; do
          printf -- '--from-literal=%s-password=%s ' "$app" "${redis_passwords[$app]}"
      done)
# The key pairs belong together: kept (or made) all at once.
if kubectl -n "$namespace" get secret preorder-identity >/dev/null 2>&1; then
    echo "secret/preorder-identity exists: the identity keys are kept (the app Secrets too)"
fi
create preorder-identity --from-literal=public-keys="$public_keys"
create preorder-gateway \
    --from-literal=redis-url="redis://gateway_svc:${redis_passwords[gateway]}@redis:6379/0" \
    --from-literal=identity-private-key="${identity_private[gateway]}"
# Development only: every service reaches its own schema as MySQL's root (the migration creates
# the schema). Production gives each service a user of its own (deploy/mysql/init.sql's grants).
for name in user product order payment stock social; do
    extra=()
    if [ "$name" = user ]; then
        extra=(--from-literal=jwt-private-key="$(openssl genpkey -algorithm ed25519)")
    elif [ -n "${identity_private[$name]:-}" ]; then
        extra=(--from-literal=identity-private-key="${identity_private[$name]}")
    fi
    create "preorder-$name" \
        --from-literal=database-url="mysql+asyncmy://root:$mysql_password@mysql:3306/preorder_$name" \
        --from-literal=redis-url="redis://${name}_svc:${redis_passwords[$name]}@redis:6379/0" \
        "${extra[@]}"
done
