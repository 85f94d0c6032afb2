#!/usr/bin/env bash
# Dependencies of the ironclaw-sandbox tests and benchmarks. Idempotent.
# Tests need nothing beyond the kernel (Landlock ABI 6+, seccomp, user namespaces) and the
# Debian base system (dash, bash, find, xargs, time, env). The benchmark compares against
# bubblewrap.
set -euo pipefail
need=()
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${need[@]}"
fi
