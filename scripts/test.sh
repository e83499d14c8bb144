#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, the services' in-process tests and the end-to-end
# tests (e2e/). The tests start their own nats-server processes; this script makes sure one is
# installed (.tools/venv, pinned version) and passes its path in OMS_NATS_SERVER.
#
#   ./scripts/test.sh [extra cargo test arguments]
#   ./scripts/test.sh -p oms-inventory           # one crate
#   ./scripts/test.sh -- --nocapture some_test   # arguments for the test binaries
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$OMS_ROOT"

ensure_rust
ensure_nats_server >/dev/null
log_info "nats-server for the tests: $("$OMS_NATS_SERVER" --version 2>&1) ($OMS_NATS_SERVER)"

log_info "cargo test --workspace --all-targets $*"
status=0
cargo test --workspace --all-targets "$@" || status=$?
if ((status == 0)); then
    log_ok "all tests passed"
else
    log_error "tests failed (cargo test exit status $status)"
fi
exit "$status"
