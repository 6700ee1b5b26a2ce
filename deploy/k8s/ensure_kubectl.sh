#!/usr/bin/env bash
# Makes sure `kubectl` (with its built-in kustomize) is on PATH: the Kubernetes manifests' test
# renders deploy/k8s/overlays/* with it. Installs Debian's kubernetes-client when it is missing
# and this runs as root (CI, the project's machines); otherwise says what to install.
# Used by `make test`'s set-up and by .ci/run.
set -euo pipefail

if command -v kubectl >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "kubectl is missing: install Debian's kubernetes-client (sudo apt-get install kubernetes-client)" >&2
    echo "or any kubectl >= 1.20; the Kubernetes manifests' test needs it" >&2
    exit 1
fi
echo "installing kubectl (Debian's kubernetes-client)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null
kubectl version --client >/dev/null
