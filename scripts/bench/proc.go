package main

// What the load generator reads about the servers: their database and
// their CPU time and memory, from /proc.

import (
	"bytes"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// countFamilies counts the rows of keygate's refresh_families table, read
// beside the running server (WAL mode lets it).
func countFamilies(dir string) (int, error) {
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "keygate.db")+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int
	err = db.QueryRow(`SELECT COUNT(*) FROM refresh_families`).Scan(&n)
	return n, err
}

// cpuTime is the process's user+system CPU time from /proc.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) start after ")".
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticksPerSecond
}

func peakRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

// roundsLength is about how long compare's measured rounds run for n
// targets (its warm-ups come before).
func roundsLength(n, rounds int, d time.Duration) time.Duration {
	return time.Duration(n)*(d+time.Duration(rounds)*settle) - time.Second
}

// fetchProfile writes a CPU profile of t's next d to path, through its
// admin listener's /debug/pprof/profile; at most 14 s, under keygate's
// default server.write_timeout (15 s), which pprof honours.
func fetchProfile(t *target, path string, d time.Duration) error {
	d = min(d, 14*time.Second)
	return download(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", t.admin, int(d.Seconds())), path, d+30*time.Second)
}

// fetchHeapProfile writes t's heap profile, taken after a collection, to
// path, and its /proc/PID/smaps_rollup to path+".smaps": what of its RSS is
// heap and what is mapped files (the binary, SQLite's database).
func fetchHeapProfile(t *target, path string) error {
	if err := download(t.admin+"/debug/pprof/heap?gc=1", path, time.Minute); err != nil {
		return err
	}
	rollup, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", t.cmd.Process.Pid))
	if err != nil {
		return err
	}
	return os.WriteFile(path+".smaps", rollup, 0o644)
}

// download writes the body of a GET of url to path.
func download(url, path string, timeout time.Duration) error {
	c := &http.Client{Timeout: timeout}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
