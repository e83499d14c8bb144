#!/usr/bin/env bash
# Checks compose.yaml (CI runs this): the shell scripts that it and the image run must parse, then
# e2e/tests/compose.rs validates compose.yaml against the Compose Specification's JSON schema
# (ci/compose-spec.json, kept in the repository) and against the project (OMS_* config keys,
# health-check ports, who mounts which identity's secrets, no secret literals, the image's
# binaries, volumes and depends_on), and checks that broken copies of it are refused.
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
cargo test -p oms-e2e --test compose
