#!/bin/bash
# Entrypoint of compose.yaml's postgres service, run before the image's own (docker-entrypoint.sh).
#
# The passwords come from the `secrets` one-shot (compose/make-secrets.sh): the volume
# postgres-secrets, mounted read-only where POSTGRES_PASSWORD_FILE points, holds <role>.password
# for the superuser and each service's role; its files are 0600, owned by the OMS image's user.
# The image's entrypoint starts as root and reads POSTGRES_PASSWORD_FILE as root, then runs
# the init scripts as user postgres, which may not read those files. So on the first start (an
# empty data volume) this script, still root, hands compose/postgres-init.sql copies owned by
# postgres, in $INIT_DIR; that file deletes them once the roles exist. On later starts there
# is nothing to initialize and nothing is copied.
set -euo pipefail

INIT_DIR=/run/oms-postgres-init

superuser_file="${POSTGRES_PASSWORD_FILE:?set POSTGRES_PASSWORD_FILE to the superuser password in the postgres-secrets volume}"
secrets="$(dirname "$superuser_file")"

if [[ "$(id -u)" == 0 && ! -s "${PGDATA:?}/PG_VERSION" ]]; then
    [[ -s "$superuser_file" ]] ||
        { echo "postgres-entrypoint: $superuser_file is missing or empty (the secrets one-shot makes it)" >&2; exit 1; }
    install -d -o postgres -g postgres -m 0700 "$INIT_DIR"
    copied=0
    for f in "$secrets"/*.password; do
        [[ "$f" == "$superuser_file" ]] && continue
        [[ -s "$f" ]] || { echo "postgres-entrypoint: $f is empty" >&2; exit 1; }
        install -o postgres -g postgres -m 0600 "$f" "$INIT_DIR/"
        copied=$((copied + 1))
    done
    echo "postgres-entrypoint: first start: $copied role password(s) for the init script in $INIT_DIR" >&2
fi

exec docker-entrypoint.sh "$@"
