#!/bin/bash
# oms-healthcheck URL: exits 0 when `GET URL` answers with a 2xx status, 1 otherwise.
#
#   oms-healthcheck http://127.0.0.1:8091/readyz
#
# The Docker image installs this as /usr/local/bin/oms-healthcheck for the containers' health
# checks (compose.yaml). It speaks HTTP/1.1 over bash's /dev/tcp, so the image needs neither
# curl nor wget. Plain http:// with an explicit host and port only.
set -u

url="${1:-}"
if [[ ! "$url" =~ ^http://([^/:]+):([0-9]+)(/[^[:space:]]*)?$ ]]; then
    echo "usage: oms-healthcheck http://HOST:PORT/PATH (got '$url')" >&2
    exit 2
fi
host="${BASH_REMATCH[1]}" port="${BASH_REMATCH[2]}" path="${BASH_REMATCH[3]:-/}"

# Connecting fails at once when nothing listens; bash prints why.
exec 3<>"/dev/tcp/$host/$port" || exit 1
printf 'GET %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: oms-healthcheck\r\nConnection: close\r\n\r\n' \
    "$path" "$host" "$port" >&3
# The status line, e.g. "HTTP/1.1 200 OK". Docker's own timeout also ends a hung check.
if ! IFS= read -r -t 2 status <&3; then
    echo "$url: no answer" >&2
    exit 1
fi
# Read the rest until the server closes (Connection: close), so it never writes to a reset socket.
while IFS= read -r -t 2 _ <&3; do :; done
exec 3<&- 3>&-
status="${status%$'\r'}"
if [[ "$status" =~ ^HTTP/[0-9.]+\ 2[0-9][0-9]([[:space:]]|$) ]]; then
    echo "$url: $status"
    exit 0
fi
echo "$url: $status" >&2
exit 1
