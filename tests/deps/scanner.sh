#!/usr/bin/env bash
# Dependencies of the ironclaw-scanner tests and CI steps (idempotent).
#  * cargo-fuzz: for sidecar/scanner/fuzz/run-ci.sh (the brief fuzz run in CI).
#  * python3: only for the Python `re` baseline of the speed benchmark (optional).
# The evaluation sets are not installed here: CI provides them at <repo>/../shared/evals/injection
# (or IRONCLAW_EVALS_DIR); the dev-set test fails with a clear message when they are missing.
set -euo pipefail
if ! command -v cargo-fuzz >/dev/null 2>&1 && ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
if ! command -v python3 >/dev/null 2>&1; then
    apt-get install -y --no-install-recommends python3
fi
