package main

// keygate on PostgreSQL: one replica, or several behind the load
// generator (each connection sticks to one replica, as behind a
// connection-balancing proxy), on a throwaway cluster that scripts/bench.sh
// starts with scripts/pgtmp.sh.

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// benchMasterKey is the master key every PostgreSQL replica shares.
const benchMasterKey = "bench-master-key-bench-master-key-0123"

// startKeygatePostgres starts n keygate replicas on a fresh database of
// the cluster at server (its data directory is dataDir, for its CPU time).
func startKeygatePostgres(bin, dir, server, dataDir, name string, n int) (*target, error) {
	dbURL, err := freshDatabase(server, name)
	if err != nil {
		return nil, err
	}
	env := []string{
		"KEYGATE_DATABASE_DRIVER=postgres",
		"KEYGATE_DATABASE_URL=" + dbURL,
		"KEYGATE_TOKENS_MASTER_KEY=" + benchMasterKey,
	}
	var first *target
	for i := range n {
		// The first replica mints the partner and creates the signing key;
		// the others start on what it made.
		t, err := startKeygateEnv(bin, filepath.Join(dir, fmt.Sprintf("%s-%d", name, i)), env, i == 0)
		if err != nil {
			if first != nil {
				stop(first)
			}
			return nil, err
		}
		if first == nil {
			first = t
			first.pgData = dataDir
		} else {
			first.more = append(first.more, t)
		}
	}
	first.name = name
	return first, nil
}

// freshDatabase creates database name on the cluster (with psql, which
// Debian's postgresql package brings) and returns its URL.
func freshDatabase(server, name string) (string, error) {
	for _, sql := range []string{`DROP DATABASE IF EXISTS ` + name, `CREATE DATABASE ` + name} {
		if out, err := exec.Command("psql", server, "-qc", sql).CombinedOutput(); err != nil {
			return "", fmt.Errorf("psql %s: %w\n%s", sql, err, out)
		}
	}
	u, err := url.Parse(server)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

// replicas are the processes of t: itself and any more behind the load
// generator.
func (t *target) replicas() []*target { return append([]*target{t}, t.more...) }

// at is the base URL of the replica connection w talks to.
func (t *target) at(w int) string {
	rs := t.replicas()
	return rs[w%len(rs)].base
}

// cpuTime is the CPU time of all of t's processes.
func (t *target) cpuTime() time.Duration {
	var sum time.Duration
	for _, r := range t.replicas() {
		sum += cpuTime(r.cmd.Process.Pid)
	}
	return sum
}

// peakRSS adds up the peak RSS of t's processes.
func (t *target) peakRSS() float64 {
	var sum float64
	for _, r := range t.replicas() {
		sum += peakRSS(r.cmd.Process.Pid)
	}
	return sum
}

// dbCPUTime is the CPU time of PostgreSQL's processes (the postmaster and
// its children: backends, WAL writer, checkpointer...), 0 for a target
// without a cluster.
func (t *target) dbCPUTime() time.Duration {
	if t.pgData == "" {
		return 0
	}
	b, err := os.ReadFile(filepath.Join(t.pgData, "postmaster.pid"))
	if err != nil {
		return 0
	}
	postmaster, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		return 0
	}
	sum := cpuTime(postmaster)
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		st, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		fields := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+2:]))
		if ppid, _ := strconv.Atoi(fields[1]); ppid == postmaster {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			sum += cpuTime(pid)
		}
	}
	return sum
}
