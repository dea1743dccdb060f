#!/usr/bin/env bash
# The whole test suite, PostgreSQL included:
#
#   scripts/test.sh [go test arguments]     (default: ./...)
#
# Starts two throwaway PostgreSQL clusters with scripts/pgtmp.sh (Debian's
# postgresql package; initdb and pg_ctl in a temporary directory, as the
# postgres user when run as root, on 127.0.0.1 and a free port): one for
# every PostgreSQL test, each in a fresh schema, and one that the fault
# tests alone stop, freeze (SIGSTOP) and start again. Exports their URLs
# (KEYGATE_TEST_POSTGRES_URL and the _FAULT_ variables, see postgres/pgtest;
# with the first set and the others not, the fault tests fail rather than
# skip), runs go test -race -v, prints
# each package's result line and how many tests ran against PostgreSQL
# (the whole log if anything failed), and stops the clusters, even on
# failure or interrupt.
#
# Plain `go test ./...` still works for a quick run: the PostgreSQL tests
# then skip, saying why.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

tmp="$(mktemp -d)"
chmod 711 "$tmp" # the clusters' owner must reach its directories inside
mkdir "$tmp/main" "$tmp/fault"
cleanup() {
	scripts/pgtmp.sh stop "$tmp/main" || true
	scripts/pgtmp.sh stop "$tmp/fault" || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

started=$SECONDS
KEYGATE_TEST_POSTGRES_URL="$(scripts/pgtmp.sh start "$tmp/main")"
KEYGATE_TEST_POSTGRES_FAULT_URL="$(scripts/pgtmp.sh start "$tmp/fault")"
export KEYGATE_TEST_POSTGRES_URL KEYGATE_TEST_POSTGRES_FAULT_URL
export KEYGATE_TEST_POSTGRES_FAULT_CTL="$root/scripts/pgtmp.sh"
export KEYGATE_TEST_POSTGRES_FAULT_DIR="$tmp/fault"
echo "PostgreSQL test clusters up in $((SECONDS - started))s: $KEYGATE_TEST_POSTGRES_URL (fault tests: $KEYGATE_TEST_POSTGRES_FAULT_URL)"

log="$tmp/go-test.log"
if [[ $# -eq 0 ]]; then
	set -- ./...
fi
status=0
go test -race -v "$@" >"$log" 2>&1 || status=$?

if [[ $status -ne 0 ]]; then
	cat "$log"
else
	grep -E '^(ok|FAIL|\?) ' "$log" || true
fi
# pgtest logs a marker for every test or subtest it gives a database to.
ran=$(grep -c 'pgtest: PostgreSQL schema' "$log" || true)
skipped=$(grep -c 'skipping a test that needs PostgreSQL\|skipping a test that stops PostgreSQL' "$log" || true)
echo "PostgreSQL: $ran tests and subtests ran on a database of their own, $skipped skipped"
grep -E -- '--- (PASS|FAIL): TestPostgres' "$log" | sed 's/^ */  /' || true
if [[ $status -eq 0 && ($ran -eq 0 || $skipped -ne 0) ]]; then
	echo "scripts/test.sh: the PostgreSQL tests did not all run" >&2
	status=1
fi
echo "scripts/test.sh: go test exited $status after $((SECONDS - started))s"
exit $status
