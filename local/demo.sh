#!/usr/bin/env bash
# The main job: local mode on the embedded default config (strict sandbox), with the example skill.
# Usage: bash local/demo.sh        (IRONCLAW_HOME defaults to a fresh temporary directory)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p ironclaw
B="$PWD/target/release/ironclaw"
export IRONCLAW_HOME="${IRONCLAW_HOME:-$(mktemp -d /tmp/ironclaw-demo.XXXXXX)}"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "IRONCLAW_HOME=$IRONCLAW_HOME (no ironclaw.json: the embedded default config is in force)"
"$B" config get security.sandbox.mode
step "gateway start --detach (GATEWAY_START with config hash, sandbox mode, authorised skills)"
"$B" gateway start --detach
"$B" gateway status
step "install the example skill; it is not on the allowlist, so it cannot run"
"$B" skill install local/examples/skills/hello
"$B" skill run hello || echo "(refused, as it should be)"
step "grant exactly what it needs, and run it under the strict sandbox"
mkdir -p "$IRONCLAW_HOME/workspace/shared" && echo "team notes" > "$IRONCLAW_HOME/workspace/shared/notes.txt"
"$B" allowlist grant hello --env HELLO_NAME --filesystem "~/.ironclaw/workspace/shared:ro"
HELLO_NAME=Ada SECRET_API_KEY=should-not-leak "$B" skill run hello -- "$IRONCLAW_HOME/workspace/shared"
step "the same skill tries to go beyond its grants: the kernel blocks each attempt and IronClaw logs it"
"$B" skill run hello -- "$IRONCLAW_HOME/workspace/shared" --probe
step "skill list / doctor"
"$B" skill list
"$B" doctor || true
step "gateway stop (GATEWAY_STOP planned=true)"
"$B" gateway stop
step "the audit trail"
"$B" audit show
