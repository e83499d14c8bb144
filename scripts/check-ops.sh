#!/usr/bin/env bash
# Checks ops/ (CI runs this): the Prometheus config and alert rules with promtool (check config,
# check rules, and the rules' unit tests in ops/prometheus/alerts.test.yml), the PromQL of every
# panel of the Grafana dashboards (as recording rules, so promtool parses it), then
# e2e/tests/ops.rs: every metric the dashboards and rules use is in the README's "Metrics" table.
#
#   scripts/check-ops.sh
#
# promtool: the one on PATH, else .tools/promtool/bin/promtool, else it is taken from Debian's
# package `prometheus` (apt-get download, unpacked into .tools/promtool: only promtool, no server
# is installed or started).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$OMS_ROOT"

OMS_PROMTOOL_DIR="$OMS_TOOLS_DIR/promtool"

ensure_promtool() {
    local bin="$OMS_PROMTOOL_DIR/bin/promtool" tmp
    if command -v promtool >/dev/null 2>&1; then
        command -v promtool
        return 0
    fi
    if [[ ! -x "$bin" ]]; then
        command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 ||
            die "promtool is missing: install Prometheus's promtool (Debian: sudo apt-get install prometheus)"
        tmp="$(mktemp -d)"
        log_info "getting promtool from the Debian package prometheus into .tools/promtool"
        if ! (cd "$tmp" && apt-get download prometheus >&2 2>/dev/null); then
            # No package lists yet: they need root.
            is_root || die "apt-get download prometheus failed; as root, run apt-get update first (or install promtool)"
            DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
            (cd "$tmp" && apt-get download prometheus >&2) ||
                { rm -rf "$tmp"; die "apt-get download prometheus failed (see above)"; }
        fi
        dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x" ||
            { rm -rf "$tmp"; die "could not unpack the prometheus package"; }
        install -D -m 0755 "$tmp/x/usr/bin/promtool" "$bin"
        rm -rf "$tmp"
    fi
    printf '%s\n' "$bin"
}

promtool="$(ensure_promtool)"
log_ok "$("$promtool" --version 2>&1 | head -n1) at $promtool"

# The token file exists only in the compose volume: the config is checked with a stand-in for it.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp ops/prometheus/*.yml "$work/"
printf 'stand-in\n' >"$work/metrics.token"
sed -i "s#credentials_file: .*#credentials_file: $work/metrics.token#" "$work/prometheus.yml"
"$promtool" check config "$work/prometheus.yml"
"$promtool" check rules ops/prometheus/alerts.yml
(cd ops/prometheus && "$promtool" test rules alerts.test.yml)

# Every panel query of the dashboards, as a recording rule: promtool parses the PromQL. Grafana's
# own variables become a plain range first.
python3 - "$work/dashboards.rules.yml" ops/grafana/dashboards/*.json <<'PY'
import json, sys

out, files = sys.argv[1], sys.argv[2:]
rules = []

def panels(items):
    for p in items:
        yield p
        yield from panels(p.get("panels", []))

for f in files:
    for p in panels(json.load(open(f))["panels"]):
        for t in p.get("targets", []):
            expr = t["expr"].replace("$__rate_interval", "1m").replace("$__interval", "1m")
            rules.append((f"{f}: panel {p.get('title')!r} {t.get('refId')}", expr))
if not rules:
    sys.exit("no panel queries found in " + " ".join(files))
with open(out, "w") as o:
    o.write("groups:\n  - name: dashboards\n    rules:\n")
    for i, (where, expr) in enumerate(rules):
        o.write(f"      # {where}\n      - record: dashboard:query:{i}\n        expr: {json.dumps(expr)}\n")
print(f"{len(rules)} panel queries from {len(files)} dashboard(s)")
PY
"$promtool" check rules "$work/dashboards.rules.yml"

ensure_rust
cargo test -p oms-e2e --test ops
