#!/usr/bin/env bash
# Mint a partner and print its API key, the only time it can be seen.
#
#   scripts/mint-partner-key.sh NAME
#
# Uses `keygate` from PATH if there is one, else builds this checkout into a
# temporary directory and runs that. Either way keygate runs where the
# operator stands, so configuration comes from the usual places
# (KEYGATE_CONFIG=FILE, ./config.yaml, KEYGATE_* variables): point it at the
# same database as the server, e.g.
# KEYGATE_DATABASE_PATH=/var/lib/keygate/keygate.db.
set -euo pipefail

if [[ $# -ne 1 || -z "$1" ]]; then
	echo "usage: $0 NAME" >&2
	exit 2
fi

if command -v keygate >/dev/null 2>&1; then
	kg=(keygate)
else
	# Build rather than `go run -C`, which would run keygate in the checkout:
	# it would read the checkout's config.yaml instead of ./config.yaml and
	# resolve relative paths (KEYGATE_CONFIG, database.path) against it.
	root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
	bin="$(mktemp -d)"
	trap 'rm -rf "$bin"' EXIT
	go build -C "$root" -o "$bin/keygate" .
	kg=("$bin/keygate")
fi

out="$("${kg[@]}" partner create --name "$1" --json)"
key="$(printf '%s\n' "$out" | sed -n 's/^ *"apiKey": "\([^"]*\)",\{0,1\}$/\1/p')"
id="$(printf '%s\n' "$out" | sed -n 's/^ *"id": "\([^"]*\)",\{0,1\}$/\1/p')"
if [[ -z "$key" ]]; then
	echo "mint-partner-key: no key in keygate's output" >&2
	exit 1
fi
echo "partner $id: store this API key now, it is shown only once:" >&2
printf '%s\n' "$key"
