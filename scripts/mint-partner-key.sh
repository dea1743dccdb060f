#!/usr/bin/env bash
# Mint a partner and print its API key, the only time it can be seen.
#
#   scripts/mint-partner-key.sh NAME
#
# Uses `keygate` from PATH if there is one, else runs this checkout with
# `go run`. Configuration comes from the usual places (KEYGATE_CONFIG=FILE,
# ./config.yaml, KEYGATE_* variables), so point it at the same database as
# the server, e.g. KEYGATE_DATABASE_PATH=/var/lib/keygate/keygate.db.
set -euo pipefail

if [[ $# -ne 1 || -z "$1" ]]; then
	echo "usage: $0 NAME" >&2
	exit 2
fi

if command -v keygate >/dev/null 2>&1; then
	kg=(keygate)
else
	root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
	kg=(go run -C "$root" .)
	# go run -C changes directory: keep a relative database path relative to
	# where the operator stands.
	if [[ -z "${KEYGATE_DATABASE_PATH:-}" && ! -f config.yaml ]]; then
		export KEYGATE_DATABASE_PATH="$PWD/data/keygate.db"
	fi
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
