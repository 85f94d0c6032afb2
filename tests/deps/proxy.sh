#!/usr/bin/env bash
# Dependencies of the egress proxy's benchmark (sidecar/proxy, docs/benchmarks.md):
# tinyproxy and squid, the baselines the proxy is measured against, and nginx, the standard
# origin of its reference-condition run (`proxy-bench --origin nginx`). Idempotent.
# The proxy's tests themselves need nothing beyond cargo (real TCP on 127.0.0.0/8).
set -euo pipefail

need=()
command -v tinyproxy >/dev/null 2>&1 || need+=(tinyproxy)
command -v squid >/dev/null 2>&1 || need+=(squid)
[ -x /usr/sbin/nginx ] || need+=(nginx)
if ((${#need[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${need[@]}" ||
        { apt-get update && apt-get install -y --no-install-recommends "${need[@]}"; }
fi
# Debian starts the packaged daemons as services where it can; the benchmark runs its own
# instances on 127.0.0.1 with its own configuration, so stop any packaged ones (ignore failure:
# there may be no init system).
for svc in tinyproxy squid nginx; do
    if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
done
