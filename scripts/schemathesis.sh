#!/usr/bin/env bash
# Checks the running system against its own API description: starts the OMS as
# ./scripts/run.sh does (nats-server and the five services, real tokens), then
# runs schemathesis (pinned, installed into .tools/schemathesis/venv) against the edge's
# GET /openapi.json, once with an operator's token and once with a customer's. It fails when a
# response is a 5xx or does not conform to the description (status code, content type,
# headers, body schema). What it started, it stops (by pid) on the way out.
#
#   ./scripts/schemathesis.sh [--no-build] [--debug]
#
#   --debug   the debug build (what the tests build; CI uses it), not the release build
#
# Environment:
#   SCHEMATHESIS_MAX_EXAMPLES   test cases per operation and phase (default 100)
#   SCHEMATHESIS_SEED           random seed, to replay a run (default: a new one, printed)
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$OMS_ROOT"

OMS_SCHEMATHESIS_VERSION="4.32.5"
SCHEMATHESIS_VENV="$OMS_TOOLS_DIR/schemathesis/venv"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-100}"
SEED="${SCHEMATHESIS_SEED:-$RANDOM$RANDOM}"
RUN_ARGS=(--no-logs)
BIN=target/release
for arg in "$@"; do
    case "$arg" in
        --no-build) RUN_ARGS+=(--no-build) ;;
        --debug) RUN_ARGS+=(--debug) BIN=target/debug ;;
        -h | --help)
            sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
            exit 0
            ;;
        *) die "unknown argument '$arg' (try --help)" ;;
    esac
done

ensure_schemathesis() {
    local st="$SCHEMATHESIS_VENV/bin/schemathesis" py
    if [[ -x "$st" ]] && "$SCHEMATHESIS_VENV/bin/pip" show schemathesis 2>/dev/null |
        grep -qx "Version: $OMS_SCHEMATHESIS_VERSION"; then
        printf '%s\n' "$st"
        return 0
    fi
    py="$(_find_venv_python)" || {
        apt_install python3 python3-venv python3-pip || true
        py="$(_find_venv_python)" ||
            die "schemathesis needs python3 with venv: sudo apt-get install python3 python3-venv"
    }
    log_info "installing schemathesis $OMS_SCHEMATHESIS_VERSION (Python package) into .tools/schemathesis/venv"
    rm -rf "$SCHEMATHESIS_VENV"
    mkdir -p "$(dirname "$SCHEMATHESIS_VENV")"
    "$py" -m venv "$SCHEMATHESIS_VENV" >&2 || die "could not create $SCHEMATHESIS_VENV"
    "$SCHEMATHESIS_VENV/bin/pip" install --disable-pip-version-check --no-input -q \
        "schemathesis==$OMS_SCHEMATHESIS_VERSION" >&2 || {
        rm -rf "$SCHEMATHESIS_VENV"
        die "'pip install schemathesis==$OMS_SCHEMATHESIS_VERSION' failed (is the Python package index reachable?)"
    }
    printf '%s\n' "$st"
}

ensure_command curl curl
SCHEMATHESIS="$(ensure_schemathesis)"

# A system of its own: its own data folder and free ports, so that it neither meets nor
# disturbs a ./scripts/run.sh of this checkout.
DATA="target/schemathesis-run"
rm -rf "$DATA"
export RUN_DATA="$DATA" READY_TIMEOUT="${READY_TIMEOUT:-120}"
mapfile -t ports < <(_free_ports 7)
export NATS_PORT="${ports[0]}" NATS_HTTP_PORT="${ports[1]}"
i=2
for svc in EDGE CUSTOMER INVENTORY PAYMENT ORDER; do
    export "OMS_${svc}__HTTP_PORT=${ports[i]}"
    i=$((i + 1))
done
EDGE="http://127.0.0.1:$OMS_EDGE__HTTP_PORT"

RUN_PID=""
stop_system() {
    [[ -n "$RUN_PID" ]] || return 0
    # run.sh stops the services, then nats-server, on SIGTERM.
    kill -TERM "$RUN_PID" 2>/dev/null || true
    wait "$RUN_PID" 2>/dev/null || true
    RUN_PID=""
}
trap stop_system EXIT

section "the system (scripts/run.sh ${RUN_ARGS[*]}), for schemathesis"
scripts/run.sh "${RUN_ARGS[@]}" >&2 &
RUN_PID=$!

# run.sh builds (minutes on a fresh checkout), then starts everything and waits for /readyz.
deadline=$((SECONDS + 1800))
until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$EDGE/readyz" 2>/dev/null)" == 200 ]]; do
    kill -0 "$RUN_PID" 2>/dev/null || {
        RUN_PID=""
        die "scripts/run.sh stopped before the edge was ready"
    }
    ((SECONDS < deadline)) || die "the edge was not ready within 30 minutes"
    sleep 0.5
done
# run.sh starts the five together; the edge's /readyz may come before the others'.
for svc in CUSTOMER INVENTORY PAYMENT ORDER; do
    port_var="OMS_${svc}__HTTP_PORT"
    until curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:${!port_var}/readyz" 2>/dev/null; do
        kill -0 "$RUN_PID" 2>/dev/null || die "scripts/run.sh stopped"
        ((SECONDS < deadline)) || die "${svc,,} was not ready in time"
        sleep 0.5
    done
done
log_ok "the system is up; the edge is $EDGE"

token() {
    OMS_PROFILE=dev OMS_CONFIG="$OMS_ROOT/oms.toml" OMS_DATA_DIR="$DATA" \
        "$BIN/oms-token" "$@"
}
OPERATOR="$(token --operator)" || die "oms-token could not mint an operator token"
CUSTOMER="$(token --customer OMS-Cust-001)" || die "oms-token could not mint a customer token"

CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance
status=0
for who in operator customer; do
    if [[ $who == operator ]]; then bearer="$OPERATOR"; else bearer="$CUSTOMER"; fi
    section "schemathesis $OMS_SCHEMATHESIS_VERSION as $who ($EDGE/openapi.json, seed $SEED, $MAX_EXAMPLES examples)"
    started=$SECONDS
    # The event streams never end (by design), so they are left out; e2e/tests/board.rs tests
    # them. One worker: with several, hypothesis parses lambdas' source on threads at once, which
    # Python 3.11's parser does not survive ("AST constructor recursion depth mismatch").
    # From the run's folder, where it keeps its example database (.schemathesis/).
    (cd "$DATA" && "$SCHEMATHESIS" run "$EDGE/openapi.json" \
        --header "Authorization: Bearer $bearer" \
        --checks "$CHECKS" \
        --exclude-path-regex '/events$' \
        --phases examples,coverage,fuzzing \
        --max-examples "$MAX_EXAMPLES" \
        --seed "$SEED" \
        --workers 1 \
        --request-timeout 10 \
        --suppress-health-check all \
        --no-color) || status=$?
    echo "schemathesis as $who: exit status $status ($((SECONDS - started)) s)"
    ((status == 0)) || break
done

if ((status == 0)); then
    log_ok "schemathesis: every response conformed to docs/openapi.json, none was a 5xx"
else
    log_error "schemathesis found failures (replay with SCHEMATHESIS_SEED=$SEED); the services' logs are in $DATA/logs/"
    for svc in edge customer inventory payment order; do
        grep -iE ' (WARN|ERROR) ' "$DATA/logs/$svc.log" 2>/dev/null | tail -n 20 | sed "s/^/  $svc | /" >&2 || true
    done
fi
exit "$status"
