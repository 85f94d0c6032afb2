#!/usr/bin/env bash
# Installs what the tests need on a fresh machine (idempotent) and runs every test.
# Usage: bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CI="${CI:-true}"
for dep in tests/deps/*.sh; do
  echo "== deps: $dep"
  bash "$dep"
done
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo test --workspace"
cargo test --workspace --no-fail-fast 2>&1 | tee /tmp/ironclaw-cargo-test.log
status=${PIPESTATUS[0]}
for extra in tests/extra/*.sh; do
  [ -e "$extra" ] || continue
  echo "== $extra"
  bash "$extra" || status=1
done
exit "$status"
