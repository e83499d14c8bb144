#!/bin/bash
# The `secrets` one-shot of compose.yaml: makes this installation's secrets on the first start and
# gives each container its own and no one else's. It runs at every `docker compose up`, in the
# OMS image as its user oms, without a network; what exists is kept, so a second run changes nothing.
#
#   SECRETS_DIR         the volume `secrets`, which only this container mounts: the originals
#     nats/<identity>.nk      one nkey seed per broker identity, nats/edge-jwt.secret (the
#                             edge's HS256 key), nats/edge-jwt-es256.pem (the installation's
#                             ES256 signing key) and nats/edge-jwks.json (its public half), made
#                             by `oms-provision creds`
#     postgres/<role>.password   one random password per database role (256 bits, 64 hex digits)
#   NATS_BASE_CONFIG    where the NATS nodes mount nats-cluster.conf (it need not exist here)
#   NATS_SERVER_CONFIG  the file the nodes start with (--config), in the volume nats-auth, which the
#                       nodes mount at the same folder: `include` of NATS_BASE_CONFIG (by a path
#                       relative to this file) + the authorization block (public keys only)
#   POSTGRES_ROLES      the database roles to make a password for: the superuser and one per service
#   OUT_DIR             one folder per recipient, each a volume that only this container and that
#                       recipient mount; only the folders that are mount points are filled:
#     <identity>/             <identity>.nk (edge, customer, inventory, payment, order, provisioner,
#                             operator, observer, loadgen); the edge also edge-jwt.secret (for
#                             oms-token in its container); each of JWT_VERIFIERS edge-jwks.json;
#                             if the role oms_<identity> is in POSTGRES_ROLES, also pgpass
#                             (`*:*:*:oms_<identity>:<password>`, the service's PGPASSFILE)
#     postgres/               <role>.password of every role in POSTGRES_ROLES, for the postgres
#                             service (POSTGRES_PASSWORD_FILE, compose/postgres-entrypoint.sh)
#     prometheus/             metrics.token: an operator's bearer token for GET /metrics (oms-token,
#                             ES256 with the installation's key, which stays here), minted afresh
#                             at every run because it expires (METRICS_TOKEN_TTL)
#     grafana/                admin.password: Grafana's admin (GF_SECURITY_ADMIN_PASSWORD__FILE)
#   JWT_VERIFIERS       the identities that get the public JWKS (edge-jwks.json, auth.jwks of the
#                       docker profile) to check ES256 bearer tokens: the edge, and every service
#                       whose /metrics Prometheus reads. None of them can mint a token with it;
#                       the HS256 key, which could, goes to the edge only.
#
# Every file it writes is 0600 (owner oms), except the server config, which holds public keys only,
# and the files of Prometheus and Grafana: they run as their images' own users, so their folders
# and files are readable by the group oms too (0750, 0640), which those two join (group_add).
# The copies are rewritten at every run (through a temporary file and a rename), so they always match
# the originals. e2e/tests/compose.rs checks that each container mounts its own identity's only.
set -euo pipefail
umask 077

secrets="${SECRETS_DIR:?set SECRETS_DIR to the volume of the originals}"
out="${OUT_DIR:?set OUT_DIR to the folder of the recipient volumes}"
base="${NATS_BASE_CONFIG:?set NATS_BASE_CONFIG to where the NATS nodes mount nats-cluster.conf}"
server_config="${NATS_SERVER_CONFIG:?set NATS_SERVER_CONFIG to the file the NATS nodes start with}"
read -r -a roles <<<"${POSTGRES_ROLES:?set POSTGRES_ROLES to the database roles}"
read -r -a verifiers <<<"${JWT_VERIFIERS:-edge}"
# Long enough for a stack that runs for weeks, short enough that a copied token does not last:
# every `docker compose up` mints a new one.
token_ttl="${METRICS_TOKEN_TTL:-30days}"

say() { printf 'secrets: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# put FILE [MODE]: writes stdin to FILE (MODE, 0600 by default) through a temporary file in the
# same folder.
put() {
    local tmp
    tmp="$(mktemp "$1.XXXXXX")"
    if ! cat >"$tmp" || ! chmod "${2:-0600}" "$tmp" || ! mv -f "$tmp" "$1"; then
        rm -f "$tmp"
        die "could not write $1"
    fi
}

# The folders that are mount points (a volume), from this container's mount table.
declare -A mounted=()
while read -r _ _ _ _ point _; do
    mounted["$point"]=1
done </proc/self/mountinfo
is_volume() { [[ -n "${mounted[${1%/}]:-}" ]]; }

is_volume "$secrets" || die "$secrets is not a volume: the originals would be lost with the container"
is_volume "$(dirname "$server_config")" ||
    die "$(dirname "$server_config") is not a volume: the NATS nodes would not see $server_config"

# ---- the broker identities and the nodes' config ----
OMS_NATS__CREDS_DIR="$secrets/nats" oms-provision creds --base "$base" --out "$server_config" >/dev/null ||
    die "oms-provision creds failed"
chmod 0644 "$server_config" # public keys and permissions only
say "identities in $secrets/nats; $server_config includes $base"

# ---- the database passwords ----
install -d -m 0700 "$secrets/postgres"
for role in "${roles[@]}"; do
    [[ "$role" =~ ^[a-z_][a-z0-9_]*$ ]] || die "POSTGRES_ROLES: '$role' is not a plain role name"
    pw="$secrets/postgres/$role.password"
    if [[ ! -s "$pw" ]]; then
        od -An -N32 -tx1 /dev/urandom | tr -d ' \n' | put "$pw"
        say "made a password for the database role $role"
    fi
    [[ "$(wc -c <"$pw")" -eq 64 ]] || die "$pw is not a password of 64 hex digits"
done
grafana_pw="$secrets/grafana/admin.password"
install -d -m 0700 "$secrets/grafana"
if [[ ! -s "$grafana_pw" ]]; then
    od -An -N32 -tx1 /dev/urandom | tr -d ' \n' | put "$grafana_pw"
    say "made a password for Grafana's admin"
fi

# ---- one copy per recipient ----
has_role() {
    local r
    for r in "${roles[@]}"; do [[ "$r" == "$1" ]] && return 0; done
    return 1
}
verifies_tokens() {
    local v
    for v in "${verifiers[@]}"; do [[ "$v" == "$1" ]] && return 0; done
    return 1
}

recipients=0
for dir in "$out"/*/; do
    dir="${dir%/}"
    name="${dir##*/}"
    is_volume "$dir" || continue
    given=()
    if [[ "$name" == postgres ]]; then
        for role in "${roles[@]}"; do
            put "$dir/$role.password" <"$secrets/postgres/$role.password"
            given+=("$role.password")
        done
    elif [[ "$name" == prometheus ]]; then
        chmod 0750 "$dir"
        token="$(OMS_NATS__CREDS_DIR="$secrets/nats" oms-token --operator --name prometheus --ttl "$token_ttl" \
            --es256-key "$secrets/nats/edge-jwt-es256.pem")" &&
            [[ -n "$token" ]] || die "oms-token minted no token for Prometheus"
        printf '%s\n' "$token" | put "$dir/metrics.token" 0640
        given+=("metrics.token (valid $token_ttl)")
    elif [[ "$name" == grafana ]]; then
        chmod 0750 "$dir"
        put "$dir/admin.password" 0640 <"$grafana_pw"
        given+=(admin.password)
    else
        seed="$secrets/nats/$name.nk"
        [[ -s "$seed" ]] || die "$dir: '$name' is not a broker identity (no $seed)"
        put "$dir/$name.nk" <"$seed"
        given+=("$name.nk")
        if [[ "$name" == edge ]]; then
            put "$dir/edge-jwt.secret" <"$secrets/nats/edge-jwt.secret"
            given+=(edge-jwt.secret)
        fi
        if verifies_tokens "$name"; then
            put "$dir/edge-jwks.json" <"$secrets/nats/edge-jwks.json"
            given+=(edge-jwks.json)
        fi
        if has_role "oms_$name"; then
            printf '*:*:*:oms_%s:%s\n' "$name" "$(<"$secrets/postgres/oms_$name.password")" | put "$dir/pgpass"
            given+=(pgpass)
        fi
    fi
    say "$name gets ${given[*]}"
    recipients=$((recipients + 1))
done
[[ "$recipients" -gt 0 ]] || die "no volume is mounted under $out: nobody would get a secret"
