#!/usr/bin/env bash
# Checks compose.yaml (CI runs this): valid against the Compose Specification's JSON schema
# (ci/compose-spec.json, kept in the repository), and consistent with the project: every binary,
# port, path, volume, database and OMS_* variable it names exists; no secret is written in it, and
# each container can read its own secrets only. Then checks that broken copies of it fail
# (--self-test). Details: scripts/check_compose.py.
#
#   scripts/check-compose.sh                     # compose.yaml, then the self-test
#   scripts/check-compose.sh --compose FILE      # another file (paths in it relative to the repo root)
#
# Needs python3 >= 3.11 with venv; installs the pinned packages of ci/requirements.txt into
# .tools/venv (once; again when that file changes). Works offline after that.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$OMS_ROOT"

requirements="ci/requirements.txt"
# A copy of the requirements last installed into the venv; gone when lib.sh recreates the venv.
stamp="$OMS_VENV/.check-compose-requirements.txt"

_venv_has_requirements() {
    [[ -x "$OMS_VENV/bin/python" ]] && cmp -s "$requirements" "$stamp" &&
        "$OMS_VENV/bin/python" -c 'import jsonschema, yaml' 2>/dev/null
}

if ! _venv_has_requirements; then
    mkdir -p "$OMS_TOOLS_DIR"
    # One installer at a time (lib.sh's nats-server install takes the same lock).
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$OMS_TOOLS_DIR/.install.lock"
        flock 9
    fi
    if ! _venv_has_requirements; then
        if [[ ! -x "$OMS_VENV/bin/pip" ]]; then
            if ! py="$(_find_venv_python)"; then
                apt_install python3 python3-venv python3-pip || true
                py="$(_find_venv_python)" ||
                    die "python3 with venv is needed for the compose check: sudo apt-get install python3 python3-venv"
            fi
            log_info "creating $OMS_VENV"
            rm -rf "$OMS_VENV"
            "$py" -m venv "$OMS_VENV" >&2 || die "could not create the virtualenv $OMS_VENV with $py"
        fi
        "$OMS_VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
            die "the compose check needs Python >= 3.11; $OMS_VENV has $("$OMS_VENV/bin/python" --version 2>&1)"
        log_info "installing the compose check's Python packages ($requirements) into .tools/venv"
        "$OMS_VENV/bin/pip" install --disable-pip-version-check --no-input -q -r "$requirements" >&2 ||
            die "pip install -r $requirements failed (see above; is the Python package index reachable?)"
        cp "$requirements" "$stamp"
    fi
    if command -v flock >/dev/null 2>&1; then exec 9>&-; fi
fi

# The shell scripts compose.yaml and the image run (the health check, the secrets one-shot,
# postgres's entrypoint) must at least parse.
for script in compose/*.sh; do
    bash -n "$script" || die "$script: syntax error"
done

if [[ $# -gt 0 ]]; then
    exec "$OMS_VENV/bin/python" scripts/check_compose.py "$@"
fi
exec "$OMS_VENV/bin/python" scripts/check_compose.py --self-test
