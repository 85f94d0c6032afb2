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
echo "== cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test --workspace"
cargo test --workspace --no-fail-fast 2>&1 | tee /tmp/ironclaw-cargo-test.log
status=${PIPESTATUS[0]}
for extra in tests/extra/*.sh; do
  [ -e "$extra" ] || continue
  echo "== $extra (output in /tmp/ironclaw-$(basename "$extra" .sh).log; last lines below)"
  if bash "$extra" > "/tmp/ironclaw-$(basename "$extra" .sh).log" 2>&1; then
    tail -n 3 "/tmp/ironclaw-$(basename "$extra" .sh).log"
  else
    tail -n 40 "/tmp/ironclaw-$(basename "$extra" .sh).log"
    echo "FAILED: $extra"
    status=1
  fi
done
passed=$(grep -E '^test result:' /tmp/ironclaw-cargo-test.log | awk '{s+=$4} END {print s+0}')
failed=$(grep -E '^test result:' /tmp/ironclaw-cargo-test.log | awk '{s+=$6} END {print s+0}')
echo "tests: $passed passed, $failed failed"
exit "$status"
