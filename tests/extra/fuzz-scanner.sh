#!/usr/bin/env bash
# A brief cargo-fuzz run of the injection scanner (it must never panic, on any input).
set -euo pipefail
cd "$(dirname "$0")/../.."
FUZZ_SECONDS="${FUZZ_SECONDS:-45}" bash sidecar/scanner/fuzz/run-ci.sh
