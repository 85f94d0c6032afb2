#!/usr/bin/env bash
# Dependencies of the in-pod sidecar binary's tests (sidecar/tests/pod_*.rs) and of the pod
# end-to-end test (operator/tests/pod_e2e.rs):
# - /usr/bin/python3 (the exec test's probe program, run inside the in-place sandbox);
# - kubectl, podman, runc, busybox-static and the test control plane (tests/deps/operator.sh);
# - the statically linked ironclaw-sidecar the pod images carry (tests/cluster/build-sidecar-static,
#   built here once so the first `cargo test` does not spend its time on a release build; the
#   test runs the same command, which is then a no-op).
set -euo pipefail
if [[ ! -x /usr/bin/python3 ]]; then
  apt-get install -y --no-install-recommends python3
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/operator.sh"
"$here/../cluster/build-sidecar-static" >/dev/null
