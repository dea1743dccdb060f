#!/usr/bin/env bash
# Benchmark keygate against its floor (same HTTP stack and signing, storage
# in memory) on this machine, and print the table BENCHMARKS.md shows.
#
#   scripts/bench.sh [-duration 10s] [-conns 32] [-companies 1000] [-out FILE]
#
# Builds keygate and the load generator (scripts/bench), starts both servers
# on loopback with a fresh database (database.synchronous=FULL, rate limits
# lifted), seeds companies through the API, then measures login, refresh and
# /auth/me back to back against each.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT
echo "building..." >&2
go build -C "$root" -o "$bin/keygate" .
go build -C "$root" -o "$bin/bench" ./scripts/bench
"$bin/bench" run -keygate "$bin/keygate" "$@"
