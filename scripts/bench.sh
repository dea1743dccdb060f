#!/usr/bin/env bash
# Benchmark keygate against its floor (same HTTP stack and signing, storage
# in memory) on this machine, and print the table BENCHMARKS.md shows.
#
#   scripts/bench.sh [-duration 10s] [-conns 32] [-companies 1000] [-store postgres] [-out FILE]
#                    [-metrics on|off|both] [-rounds 6] [-phases login,refresh,me]
#
# Builds keygate and the load generator (scripts/bench), starts both servers
# on loopback with a fresh database (database.synchronous=FULL, rate limits
# lifted), seeds companies through the API, then measures login, refresh and
# /auth/me back to back against each. With -store postgres it also starts a
# throwaway PostgreSQL cluster (scripts/pgtmp.sh, as scripts/test.sh does;
# durable: fsync and synchronous_commit on) and measures keygate on it, one
# replica and two behind the load generator, beside SQLite. -metrics off
# runs keygate and the floor without their metrics (no admin listener);
# -metrics both runs each twice, with and without, in the same turns, and
# prints what the metrics cost; -rounds sets the number of turns.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$(mktemp -d)"
chmod 711 "$bin"
cleanup() {
	if [[ -d "$bin/pg" ]]; then
		"$root/scripts/pgtmp.sh" stop "$bin/pg" || true
	fi
	rm -rf "$bin"
}
trap cleanup EXIT
echo "building..." >&2
go build -C "$root" -o "$bin/keygate" .
go build -C "$root" -o "$bin/bench" ./scripts/bench
extra=()
for arg in "$@"; do
	if [[ "$arg" == postgres || "$arg" == -store=postgres ]]; then
		mkdir "$bin/pg"
		url="$("$root/scripts/pgtmp.sh" start "$bin/pg")"
		extra=(-pg-url "$url" -pg-data "$bin/pg/data")
		echo "PostgreSQL cluster: $url" >&2
		break
	fi
done
"$bin/bench" run -keygate "$bin/keygate" "${extra[@]}" "$@"
