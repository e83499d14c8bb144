#!/usr/bin/env bash
# Runs the whole OMS on this machine: one nats-server (nats.conf, JetStream store in data/nats)
# and the five services on SQLite (data/*.db), logs in data/logs/. Ctrl-C stops everything.
# On the first start it makes this installation's identities (data/creds/: one nkey seed per
# broker identity, the edge's JWT secret); nats-server runs with the permissions generated for
# them (data/nats-server.conf, which includes nats.conf), and oms-provision creates the topology
# before the services start.
#
# It is a launcher for one machine, not a supervisor: it restarts nothing, and when any process
# ends on its own it stops the others and fails. Restarting is left to what deploys the system
# (compose's restart policy, systemd); inside a service, oms-host restarts a consumer that dies.
#
#   ./scripts/run.sh [--no-build] [--no-logs]
#
#   --no-build   use the binaries already in target/release
#   --debug      the debug build (target/debug), as the tests build it: starts sooner, runs slower
#   --no-logs    do not show the services' logs on the terminal (they still go to data/logs/)
#
# Environment:
#   NATS_PORT        client port of the nats-server it starts (default 4222)
#   NATS_HTTP_PORT   its monitoring port (default 8222)
#   READY_TIMEOUT    seconds the services get to answer GET /readyz with 200 (default 60)
#   RUN_DATA         folder (under the checkout) for the stores and logs (default data)
#   OMS_PROFILE      configuration profile (default dev); any other OMS_* variable is passed on,
#                    e.g. OMS_LOG=debug or OMS_EDGE__HTTP_PORT=9090
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$OMS_ROOT"

BUILD=1
SHOW_LOGS=1
BIN=target/release
for arg in "$@"; do
    case "$arg" in
        --no-build) BUILD=0 ;;
        --debug) BIN=target/debug ;;
        --no-logs) SHOW_LOGS=0 ;;
        -h | --help)
            sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
            exit 0
            ;;
        *) die "unknown argument '$arg' (try --help)" ;;
    esac
done

SERVICES=(edge customer inventory payment order)
declare -A DEFAULT_PORT=([edge]=8090 [customer]=8091 [inventory]=8092 [payment]=8093 [order]=8094)
NATS_PORT="${NATS_PORT:-4222}"
NATS_HTTP_PORT="${NATS_HTTP_PORT:-8222}"
DATA="${RUN_DATA:-data}"
LOGS="$DATA/logs"
NATS_STORE="$OMS_ROOT/$DATA/nats"
READY_TIMEOUT="${READY_TIMEOUT:-60}"
NATS_TIMEOUT=30

# The HTTP port of a service: OMS_<SERVICE>__HTTP_PORT if set, else its default.
service_port() {
    local var="OMS_${1^^}__HTTP_PORT"
    printf '%s\n' "${!var:-${DEFAULT_PORT[$1]}}"
}

port_busy() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# True while PID is a running (not zombie) process.
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local state
    state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)"
    [[ "$state" != Z ]]
}

# ---------------------------------------------------------------------------------------------
# Tools, build, sanity checks.

ensure_command curl curl
ensure_command setsid util-linux
ensure_command flock util-linux
ensure_rust
ensure_nats_server >/dev/null

mkdir -p "$LOGS" "$NATS_STORE"

# One run per checkout. The lock is closed for the children (8>&- below).
exec 8>"$DATA/.run.lock"
flock -n 8 || die "another ./scripts/run.sh is already running in this checkout (lock $DATA/.run.lock)"

# Processes left by a run that was killed without cleaning up (kill -9, closed terminal ...).
if [[ -f "$DATA/run.pids" ]]; then
    stale=()
    while read -r name pid; do
        [[ -n "${pid:-}" ]] || continue
        comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
        if [[ "$comm" == nats-server || "$comm" == oms-* ]] && alive "$pid"; then
            stale+=("$name=$pid")
        fi
    done <"$DATA/run.pids"
    if ((${#stale[@]})); then
        die "processes of an earlier run are still running: ${stale[*]}. Stop them with: kill ${stale[*]//*=/}"
    fi
    rm -f "$DATA/run.pids"
fi

busy=()
for port in "$NATS_PORT" "$NATS_HTTP_PORT"; do
    port_busy "$port" && busy+=("$port")
done
for svc in "${SERVICES[@]}"; do
    port="$(service_port "$svc")"
    port_busy "$port" && busy+=("$port")
done
if ((${#busy[@]})); then
    die "port(s) ${busy[*]} already in use on 127.0.0.1 (see: ss -ltnp). Stop what uses them, or move NATS with NATS_PORT / NATS_HTTP_PORT and a service with OMS_<SERVICE>__HTTP_PORT."
fi

if ((BUILD)); then
    build_args=(-p oms-ops)
    for svc in "${SERVICES[@]}"; do build_args+=(-p "oms-$svc"); done
    [[ $BIN == target/release ]] && build_args+=(--release)
    log_info "building the five services (cargo build --bins ${build_args[*]})"
    cargo build --bins "${build_args[@]}"
fi
for bin in "${SERVICES[@]/#/oms-}" oms-provision oms-token; do
    [[ -x "$BIN/$bin" ]] || die "$BIN/$bin is missing; run without --no-build"
done

export OMS_PROFILE="${OMS_PROFILE:-dev}"
export OMS_CONFIG="${OMS_CONFIG:-$OMS_ROOT/oms.toml}"
export OMS_DATA_DIR="${OMS_DATA_DIR:-$DATA}"
export OMS_NATS__URL="nats://127.0.0.1:$NATS_PORT"

# This installation's identities (kept across runs) and the server config made for them.
NATS_CONFIG="$($BIN/oms-provision creds --base nats.conf --out "$DATA/nats-server.conf")" ||
    die "could not make the identities in $DATA/creds/"

# ---------------------------------------------------------------------------------------------
# Process bookkeeping and shutdown.

declare -A PID=()
STARTED=() # names, in start order
LOGVIEW_PID=""
CLEANING=""
STOP_REQUESTED=""

# start NAME LOGFILE CMD...: runs CMD under setsid, in its own process group (so a Ctrl-C on the terminal reaches
# only this script, which then stops the services before nats-server), output to LOGFILE.
start() {
    local name="$1" log="$2"
    shift 2
    setsid "$@" >>"$log" 2>&1 </dev/null 8>&- &
    PID[$name]=$!
    STARTED+=("$name")
    printf '%s %s\n' "$name" "${PID[$name]}" >>"$DATA/run.pids"
}

# stop_all_of SECONDS NAME...: SIGTERM, wait up to SECONDS, then SIGKILL what is left.
stop_all_of() {
    local grace="$1" name pid left deadline
    shift
    for name in "$@"; do
        pid="${PID[$name]}"
        if alive "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    deadline=$((SECONDS + grace))
    while :; do
        left=()
        for name in "$@"; do alive "${PID[$name]}" && left+=("$name"); done
        ((${#left[@]})) || break
        if ((SECONDS >= deadline)); then
            log_warn "still running after ${grace}s, killing: ${left[*]}"
            for name in "${left[@]}"; do kill -KILL "${PID[$name]}" 2>/dev/null || true; done
            break
        fi
        sleep 0.1
    done
    for name in "$@"; do wait "${PID[$name]}" 2>/dev/null || true; done
}

cleanup() {
    local rc=$?
    [[ -z "$CLEANING" ]] || return 0
    CLEANING=1
    trap '' INT TERM HUP
    local services=() name
    for name in "${STARTED[@]}"; do [[ "$name" == nats-server ]] || services+=("$name"); done
    if ((${#STARTED[@]})); then
        ((${#services[@]})) && {
            log_info "stopping ${services[*]}"
            stop_all_of 20 "${services[@]}"
        }
        if [[ -n "${PID[nats-server]:-}" ]]; then
            log_info "stopping nats-server"
            stop_all_of 10 nats-server
        fi
    fi
    if [[ -n "$LOGVIEW_PID" ]]; then
        sleep 0.3 # let the log view print the last lines
        kill -TERM -- "-$LOGVIEW_PID" 2>/dev/null || true
        wait "$LOGVIEW_PID" 2>/dev/null || true
    fi
    rm -f "$DATA/run.pids"
    if [[ -n "$STOP_REQUESTED" ]]; then
        log_ok "stopped"
        rc=0
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'STOP_REQUESTED=1; exit 0' INT TERM HUP

# Prints the end of a log, for a process that failed.
show_log_tail() {
    local name="$1" file="$LOGS/$1.log"
    log_error "last lines of $file:"
    tail -n 40 "$file" | sed 's/^/    /' >&2 || true
}

# ---------------------------------------------------------------------------------------------
# nats-server.

: >"$DATA/run.pids"
: >"$LOGS/nats-server.log"
for svc in "${SERVICES[@]}"; do : >"$LOGS/$svc.log"; done

log_info "starting nats-server on 127.0.0.1:$NATS_PORT (store $DATA/nats, log $LOGS/nats-server.log)"
start nats-server "$LOGS/nats-server.log" \
    "$OMS_NATS_SERVER" -c "$NATS_CONFIG" -sd "$NATS_STORE" -p "$NATS_PORT" -m "$NATS_HTTP_PORT"

deadline=$((SECONDS + NATS_TIMEOUT))
until curl -fsS -o /dev/null --max-time 2 \
    "http://127.0.0.1:$NATS_HTTP_PORT/healthz?js-enabled-only=true" 2>/dev/null; do
    if ! alive "${PID[nats-server]}"; then
        show_log_tail nats-server
        die "nats-server exited during start-up"
    fi
    if ((SECONDS >= deadline)); then
        show_log_tail nats-server
        die "nats-server did not become healthy within ${NATS_TIMEOUT}s"
    fi
    sleep 0.1
done
log_ok "nats-server is up (JetStream enabled)"

# Only the provisioner creates streams, buckets and consumers; the services wait for them.
log_info "creating the topology (oms-provision topology, log $LOGS/provision.log)"
$BIN/oms-provision topology --wait "${NATS_TIMEOUT}s" >>"$LOGS/provision.log" 2>&1 ||
    { show_log_tail provision; die "the topology could not be created"; }

# ---------------------------------------------------------------------------------------------
# Merged, prefixed view of all logs on the terminal.

if ((SHOW_LOGS)); then
    log_files=("$LOGS/nats-server.log")
    for svc in "${SERVICES[@]}"; do log_files+=("$LOGS/$svc.log"); done
    color=0
    [[ -t 1 && -z "${NO_COLOR:-}" ]] && color=1
    # tail -F prints "==> file <==" (after a blank line) whenever it switches files; awk turns
    # that into a name prefix on every line.
    # shellcheck disable=SC2016
    prefix_awk='
        BEGIN { split("36 32 33 35 34 31", palette, " ") }
        /^==> .* <==$/ {
            name = $0; sub(/^==> /, "", name); sub(/ <==$/, "", name)
            n = split(name, parts, "/"); name = parts[n]; sub(/\.log$/, "", name)
            if (name == "nats-server") name = "nats"
            if (!(name in code)) code[name] = palette[(seen++) % 6 + 1]
            prefix = sprintf("%-9s| ", name)
            if (color) prefix = "\033[" code[name] "m" prefix "\033[0m"
            if (blank > 0) blank--
            while (blank > 0) { print prefix; blank-- }
            next
        }
        /^$/ { blank++; next }
        { while (blank > 0) { print prefix; blank-- }; print prefix $0; fflush() }
    '
    # mawk (Debian's default awk) reads a pipe in large blocks unless told -W interactive.
    # shellcheck disable=SC2016
    setsid bash -c 'color="$1" program="$2"; shift 2
        awk=(awk); awk -W version 2>&1 | grep -qi mawk && awk=(awk -W interactive)
        tail -n +1 -F "$@" 2>/dev/null | "${awk[@]}" -v color="$color" "$program"' \
        logview "$color" "$prefix_awk" "${log_files[@]}" 8>&- &
    LOGVIEW_PID=$!
fi

# ---------------------------------------------------------------------------------------------
# The five services.

log_info "starting ${SERVICES[*]} (profile $OMS_PROFILE, NATS $OMS_NATS__URL, data in $OMS_DATA_DIR/)"
for svc in "${SERVICES[@]}"; do
    start "$svc" "$LOGS/$svc.log" "$BIN/oms-$svc"
done

deadline=$((SECONDS + READY_TIMEOUT))
pending=("${SERVICES[@]}")
while ((${#pending[@]})); do
    still=()
    for svc in "${pending[@]}"; do
        port="$(service_port "$svc")"
        if ! alive "${PID[$svc]}"; then
            status=0
            wait "${PID[$svc]}" 2>/dev/null || status=$?
            show_log_tail "$svc"
            die "$svc exited during start-up (status $status)"
        fi
        code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/readyz" 2>/dev/null || true)"
        if [[ "$code" == 200 ]]; then
            log_ok "$svc is ready (http://127.0.0.1:$port)"
        else
            still+=("$svc")
        fi
    done
    pending=("${still[@]+"${still[@]}"}")
    ((${#pending[@]})) || break
    if ((SECONDS >= deadline)); then
        for svc in "${pending[@]}"; do show_log_tail "$svc"; done
        die "not ready after ${READY_TIMEOUT}s (GET /readyz): ${pending[*]}"
    fi
    sleep 0.25
done

EDGE_PORT="$(service_port edge)"
# A development token for Ada Lovelace's account (12 h); `oms-token --operator` mints one that
# reads everything.
TOKEN="$($BIN/oms-token --customer OMS-Cust-001)" || die "oms-token could not mint a token"
cat <<EOF

  The OMS is running: API on http://localhost:$EDGE_PORT, NATS on $OMS_NATS__URL,
  logs in $LOGS/, data in $DATA/. Ctrl-C stops everything.

  Place an order as OMS-Cust-001 (the token is valid for 12 hours; more with
  $BIN/oms-token --customer <id>, or --operator):
    curl -i -X POST localhost:$EDGE_PORT/orders -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{"customerId":"OMS-Cust-001","totalAmount":2599.99,"productIds":["item1","item2"]}'

  Then follow it with the orderId from the answer (or its Location header):
    curl -H "Authorization: Bearer $TOKEN" localhost:$EDGE_PORT/orders/<orderId>
    curl -N -H "Authorization: Bearer $TOKEN" localhost:$EDGE_PORT/orders/<orderId>/events

  The live board: open http://localhost:$EDGE_PORT/ and paste an operator's token:
    $BIN/oms-token --operator

  Look inside with the nats CLI as the read-only observer:
    nats --server $OMS_NATS__URL --nkey $DATA/creds/observer.nk --inbox-prefix _INBOX_observer stream ls

EOF

# ---------------------------------------------------------------------------------------------
# Watch: if any process ends on its own, stop the rest and fail.

watched=()
for name in "${STARTED[@]}"; do watched+=("${PID[$name]}"); done
while :; do
    wait -n "${watched[@]}" 2>/dev/null || true
    for name in "${STARTED[@]}"; do
        if ! alive "${PID[$name]}"; then
            status=0
            wait "${PID[$name]}" 2>/dev/null || status=$?
            show_log_tail "$name"
            die "$name stopped unexpectedly (status $status); stopping the others"
        fi
    done
done
