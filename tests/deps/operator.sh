#!/usr/bin/env bash
# Dependencies of the operator's tests (crds/, operator/, tests/cluster/).
# Idempotent: installs only what is missing. Run as root before `cargo test`.
#   - golang-go, rsync, golang-github-modern-go-reflect2-dev: build Kubernetes 1.20.2
#     (kube-apiserver, kube-controller-manager) from Debian's source package (tests/cluster/up);
#   - dpkg-dev: unpacks that source package;
#   - etcd-server: the API server's store;
#   - openssl: certificates of the test control plane;
#   - kubectl: the client the tests and the scripts use (installed only if absent);
#   - golang-github-masterminds-sprig-dev, golang-gopkg-yaml.v2-dev: the chart renderer
#     (charts/ironclaw/ci/render: Go text/template + sprig; no helm binary is packaged here);
#   - podman, runc, busybox-static: the container runtime and an offline image for the
#     seccomp-profile tests (and the kubelet stand-in for the pod end-to-end test).
set -euo pipefail

want=(golang-go etcd-server rsync golang-github-modern-go-reflect2-dev dpkg-dev openssl curl
      golang-github-masterminds-sprig-dev golang-gopkg-yaml.v2-dev podman runc busybox-static)
missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if ! command -v kubectl >/dev/null 2>&1; then
  missing+=(kubernetes-client)
fi
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends "${missing[@]}" \
    || { apt-get -o DPkg::Lock::Timeout=900 update && \
         apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends "${missing[@]}"; }
fi

# Build (once, cached outside the repository) the Kubernetes control-plane binaries the
# cluster tests start, so the first `cargo test` does not spend its time building them.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/../cluster/up" --build-only
