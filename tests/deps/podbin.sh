#!/usr/bin/env bash
# Dependencies of the in-pod sidecar binary's tests (sidecar/tests/pod_*.rs):
# - /usr/bin/python3 (the exec test's probe program, run inside the in-place sandbox);
# - kubectl and the test control plane (tests/deps/operator.sh) for pod_install_profiles.
set -euo pipefail
if [[ ! -x /usr/bin/python3 ]]; then
  apt-get install -y --no-install-recommends python3
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/operator.sh"
