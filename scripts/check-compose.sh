#!/usr/bin/env bash
# Checks compose.yaml (CI runs this): the shell scripts that it and the image run must parse, then
# e2e/tests/compose.rs validates compose.yaml against the Compose Specification's JSON schema
# (ci/compose-spec.json, kept in the repository) and against the project (OMS_* config keys,
# health-check ports, who mounts which identity's secrets, no secret literals, the image's
# binaries, volumes and depends_on), checks that broken copies of it are refused, and runs the
# secrets one-shot (compose/make-secrets.sh) in a private mount namespace to see who gets what.
# scripts/test.sh runs the same test with all the others.
#
#   scripts/check-compose.sh
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$OMS_ROOT"

for script in compose/*.sh; do
    bash -n "$script" || die "$script: syntax error"
done

ensure_rust
# The secrets one-shot runs for real in the test, with the oms-provision and oms-token that cargo
# built: the same build as scripts/test.sh's, so it is made once.
cargo build --workspace --all-targets
cargo test -p oms-e2e --test compose
