#!/usr/bin/env bash
# Runs every test of the workspace twice: on SQLite (the default) and on PostgreSQL. The tests
# start their own nats-server processes; this script makes sure one is installed (.tools/venv,
# pinned version) and passes its path in OMS_NATS_SERVER. For the PostgreSQL run it uses the
# server named by OMS_TEST_POSTGRES (postgres://user[:password]@host:port, a user allowed to
# create databases), or starts a throwaway one and removes it afterwards.
#
# The e2e tests that run the services as processes start the built oms-* binaries, which
# `cargo test` does not build: each run builds them first with `cargo build` on the same targets
# and arguments, so that cargo resolves the same features and `cargo test` builds nothing again.
#
#   ./scripts/test.sh [extra cargo test arguments]
#   ./scripts/test.sh -p oms-inventory           # one crate
#   ./scripts/test.sh -- --nocapture some_test   # arguments for the test binaries
#   OMS_TEST_BACKENDS=sqlite ./scripts/test.sh   # one backend only (sqlite or postgres)
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$OMS_ROOT"

ensure_rust
ensure_nats_server >/dev/null
log_info "nats-server for the tests: $("$OMS_NATS_SERVER" --version 2>&1) ($OMS_NATS_SERVER)"
ensure_chromium

# cargo build takes the cargo arguments: not the test binaries' (after --), nor cargo test's own.
build_args=()
for arg in "$@"; do
    [[ "$arg" == "--" ]] && break
    [[ "$arg" == --no-fail-fast || "$arg" == --no-run ]] || build_args+=("$arg")
done

backends="${OMS_TEST_BACKENDS:-sqlite postgres}"
status=0
for backend in $backends; do
    section "tests on $backend"
    case "$backend" in
        sqlite)
            cargo build --workspace --all-targets "${build_args[@]}" &&
                OMS_TEST_POSTGRES="" cargo test --workspace --all-targets "$@" || status=$?
            ;;
        postgres)
            if [[ -z "${OMS_TEST_POSTGRES:-}" ]]; then
                start_test_postgres
                trap stop_test_postgres EXIT
            fi
            cargo build --workspace --all-targets "${build_args[@]}" &&
                cargo test --workspace --all-targets "$@" || status=$?
            ;;
        *) die "unknown backend '$backend' in OMS_TEST_BACKENDS (sqlite, postgres)" ;;
    esac
    ((status == 0)) || break
done
if ((status == 0)); then
    log_ok "all tests passed ($backends)"
else
    log_error "tests failed (cargo build or cargo test exit status $status)"
fi
exit "$status"
