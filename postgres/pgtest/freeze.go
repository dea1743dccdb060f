//go:build unix

package pgtest

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Freeze stops every process of the cluster with SIGSTOP, the postmaster
// first so that it forks no new one: its connections stay open and nothing
// answers, as with a host that hangs or a network that drops everything.
// Thaw (or t's cleanup, whatever happened) sends SIGCONT.
func (c *Cluster) Freeze(t testing.TB) {
	t.Helper()
	pids := c.processes(t)
	t.Cleanup(func() { signalAll(pids, syscall.SIGCONT) })
	if err := signalAll(pids, syscall.SIGSTOP); err != nil {
		t.Fatalf("pgtest: freezing the cluster: %v", err)
	}
	c.frozen = pids
}

// Thaw lets a frozen cluster run again.
func (c *Cluster) Thaw(t testing.TB) {
	t.Helper()
	if err := signalAll(c.frozen, syscall.SIGCONT); err != nil {
		t.Fatalf("pgtest: thawing the cluster: %v", err)
	}
	c.frozen = nil
}

// processes are the postmaster's pid and its children's, postmaster first.
func (c *Cluster) processes(t testing.TB) []int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(c.dir, "data", "postmaster.pid"))
	if err != nil {
		t.Fatalf("pgtest: the fault cluster is not running: %v", err)
	}
	pm, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(data), "\n", 2)[0]))
	if err != nil {
		t.Fatalf("pgtest: postmaster.pid: %v", err)
	}
	pids := []int{pm}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		stat, err := os.ReadFile(path)
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after ")".
		i := bytes.LastIndexByte(stat, ')')
		f := strings.Fields(string(stat[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pm) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
			pids = append(pids, pid)
		}
	}
	return pids
}

func signalAll(pids []int, sig syscall.Signal) error {
	var first error
	for _, pid := range pids {
		if err := syscall.Kill(pid, sig); err != nil && err != syscall.ESRCH && first == nil {
			first = err
		}
	}
	return first
}
