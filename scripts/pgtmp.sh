#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and benchmarks: Debian's
# postgresql package, initdb and pg_ctl in a directory of the caller's, on
# 127.0.0.1 and a free port, trust authentication, run as an unprivileged
# user (postgres when called as root: PostgreSQL refuses to run as root).
#
#   scripts/pgtmp.sh start DIR         initdb DIR/data, start it, print its URL
#   scripts/pgtmp.sh stop DIR          stop it (fast shutdown); no error if not running
#   scripts/pgtmp.sh restart-stop DIR  stop it, keeping DIR (fault tests)
#   scripts/pgtmp.sh restart-start DIR start it again on the same port
#
# scripts/test.sh and scripts/bench.sh use it; nothing here is for production.
set -euo pipefail

bindir() {
	local d
	for d in /usr/lib/postgresql/*/bin; do
		[[ -x "$d/initdb" ]] && latest="$d"
	done
	if [[ -z "${latest:-}" ]]; then
		echo "pgtmp: no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)" >&2
		exit 1
	fi
	echo "$latest"
}

# as runs a command as the cluster's owner.
as() {
	if [[ "$(id -u)" == 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# freeport prints a TCP port on 127.0.0.1 that nothing listens on now.
freeport() {
	local port
	for _ in $(seq 1 100); do
		port=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return
		fi
	done
	echo "pgtmp: no free port found" >&2
	exit 1
}

pgstart() {
	local dir="$1" port="$2"
	as "$(bindir)/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
		-o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir" start >/dev/null
}

cmd="${1:-}"
dir="${2:-}"
if [[ -z "$cmd" || -z "$dir" ]]; then
	echo "usage: scripts/pgtmp.sh start|stop|restart-stop|restart-start DIR" >&2
	exit 2
fi
dir="$(cd "$dir" && pwd)"

case "$cmd" in
start)
	bin="$(bindir)"
	if [[ "$(id -u)" == 0 ]]; then
		chown postgres "$dir"
	fi
	as "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log" >&2; exit 1; }
	# Durable as in production (fsync, synchronous_commit on): keygate
	# refuses synchronous_commit off and warns about fsync off, and the
	# benchmarks measure the real cost.
	printf 'max_connections = 400\nshared_buffers = 128MB\n' | as tee -a "$dir/data/postgresql.conf" >/dev/null
	for attempt in 1 2 3 4 5; do
		port="$(freeport)"
		if pgstart "$dir" "$port" 2>>"$dir/start.log"; then
			echo "$port" >"$dir/port"
			echo "postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
			exit 0
		fi
		echo "pgtmp: start on port $port failed (attempt $attempt)" >&2
	done
	cat "$dir/postgres.log" >&2 || true
	exit 1
	;;
stop | restart-stop)
	if [[ -f "$dir/data/postmaster.pid" ]]; then
		as "$(bindir)/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
	fi
	;;
restart-start)
	pgstart "$dir" "$(cat "$dir/port")"
	;;
*)
	echo "pgtmp: unknown command $cmd" >&2
	exit 2
	;;
esac
