#!/usr/bin/env bash
# Reproduces the README's Performance figures: builds the release binaries, starts the whole
# system (./scripts/run.sh) on a fresh store in data/bench/, runs loadgen, and stops the system.
#
#   ./scripts/bench.sh [--no-build] [loadgen arguments]
#
# Without loadgen arguments it runs the README's benchmark: open loop at each rate of the
# sweep (20 s each), one closed-loop run at saturation (60 s, 256 orders in flight), JetStream's
# one-hop baseline, and writes docs/benchmark.json and docs/latency.png. With arguments, they
# replace that (e.g. `./scripts/bench.sh --rate 1000 --duration 30s`).
# The system uses the usual ports (NATS 4222, edge 8090 ...): nothing else may be running on them.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$OMS_ROOT"

BUILD=1
if [[ "${1:-}" == --no-build ]]; then
    BUILD=0
    shift
fi
if (($#)); then
    LOADGEN_ARGS=("$@")
else
    LOADGEN_ARGS=(--sweep 250,500,1000,1500,2000,2500 --duration 20s --saturate 60s
        --concurrency 256 --baseline --json docs/benchmark.json --plot docs/latency.png)
fi

ensure_rust
if ((BUILD)); then
    log_info "building the services and loadgen (cargo build --release)"
    cargo build --release -p oms-ops -p oms-edge -p oms-customer -p oms-inventory \
        -p oms-payment -p oms-order -p loadgen
fi

export RUN_DATA=data/bench
rm -rf "$RUN_DATA"
# Authentication stays on; loadgen is one operator sending thousands of orders a second, so the
# per-identity rate limit is lifted for it (every other limit stays as configured).
export OMS_HTTP__RATE_PER_SECOND="${OMS_HTTP__RATE_PER_SECOND:-1000000}"
export OMS_HTTP__RATE_BURST="${OMS_HTTP__RATE_BURST:-1000000}"
# Its own process group, so that stopping it stops exactly what it started.
setsid ./scripts/run.sh --no-build --no-logs >/dev/null 2>&1 </dev/null &
RUN_PID=$!
stop_system() {
    kill -TERM "$RUN_PID" 2>/dev/null || true
    wait "$RUN_PID" 2>/dev/null || true
}
trap stop_system EXIT

log_info "waiting for the system (logs in $RUN_DATA/logs/)"
deadline=$((SECONDS + 120))
for port in 8090 8091 8092 8093 8094; do
    until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do
        kill -0 "$RUN_PID" 2>/dev/null || die "the system did not start; see $RUN_DATA/logs/"
        ((SECONDS < deadline)) || die "the system was not ready within 120 s; see $RUN_DATA/logs/"
        sleep 0.5
    done
done
log_ok "system ready; machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"

# loadgen connects to NATS as its own identity and calls the edge with an operator token.
TOKEN="$(OMS_PROFILE=dev OMS_DATA_DIR="$RUN_DATA" target/release/oms-token --operator --name loadgen)"
target/release/loadgen --creds-dir "$RUN_DATA/creds" --token "$TOKEN" "${LOADGEN_ARGS[@]}"
