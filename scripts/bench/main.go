// Command bench measures keygate against its floor (keygate itself over the
// in-memory store) and a minimal reference handler (Gin, golang-jwt and a
// map: see reference.go). scripts/bench.sh builds and runs it; see
// BENCHMARKS.md.
//
//	bench run -keygate ./keygate [-duration 10s] [-conns 32] [-companies 1000]
//	bench floor-server            (started by run; prints its address and a partner key)
//	bench reference-server        (likewise)
package main

import (
	"bytes"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: bench run|floor-server|reference-server [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = run(os.Args[2:])
	case "floor-server":
		err = floorServer(os.Args[2:])
	case "reference-server":
		err = referenceServer(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// target is one server under test.
type target struct {
	name       string
	cmd        *exec.Cmd
	base       string
	admin      string // keygate's admin listener
	partnerKey string
	companies  []string  // company API keys
	more       []*target // further replicas behind the load generator
	pgData     string    // the PostgreSQL cluster's data directory, if any
}

type result struct {
	Sent        int // requests, warm-up included
	Requests    int // requests measured
	Errors      int
	Seconds     float64
	P50, P99    time.Duration
	CPUPerReq   time.Duration // server CPU time per request, all replicas
	DBCPUPerReq time.Duration // PostgreSQL's CPU time per request
	PeakRSSMiB  float64       // all replicas' peak RSS added up
}

func (r result) rps() float64 { return float64(r.Requests) / r.Seconds }

func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	keygateBin := fs.String("keygate", "./keygate", "keygate binary")
	duration := fs.Duration("duration", 10*time.Second, "duration of each measured phase")
	conns := fs.Int("conns", 32, "concurrent connections")
	ncompanies := fs.Int("companies", 1000, "companies to seed through the API")
	out := fs.String("out", "", "also write the table to this file")
	profile := fs.String("floor-cpuprofile", "", "write a CPU profile of the floor's whole run to this file")
	kgProfile := fs.String("keygate-cpuprofile", "", "write a CPU profile of keygate during one phase (-profile-phase) to this file")
	profilePhase := fs.String("profile-phase", "refresh", "the phase -keygate-cpuprofile covers: login, refresh or me")
	seedKeys := fs.Int("seed-keys", 0, "extra partner keys written straight into keygate's database before it starts (scale test)")
	storeName := fs.String("store", "sqlite", "sqlite, or postgres: also keygate on PostgreSQL, one replica and two")
	pgURL := fs.String("pg-url", "", "-store postgres: the cluster's URL (scripts/bench.sh starts one)")
	pgData := fs.String("pg-data", "", "-store postgres: the cluster's data directory, to read its CPU time")
	if err := fs.Parse(args); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "keygate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	ref, err := startSelf(self, "reference-server", "reference")
	if err != nil {
		return fmt.Errorf("starting the reference: %w", err)
	}
	defer stop(ref)
	var floorArgs []string
	if *profile != "" {
		floorArgs = append(floorArgs, "-cpuprofile", *profile)
	}
	floor, err := startSelf(self, "floor-server", "floor", floorArgs...)
	if err != nil {
		return fmt.Errorf("starting the floor: %w", err)
	}
	defer stop(floor)
	if *seedKeys > 0 {
		if err := seedStore(filepath.Join(dir, "keygate.db"), *seedKeys); err != nil {
			return fmt.Errorf("seeding keys: %w", err)
		}
	}
	kg, err := startKeygate(*keygateBin, dir)
	if err != nil {
		return fmt.Errorf("starting keygate: %w", err)
	}
	defer stop(kg)

	client := newClient(*conns)
	targets := []*target{ref, floor, kg}
	names := []string{"reference (Gin + map)", "floor (keygate, memory)", "keygate (SQLite)"}
	switch *storeName {
	case "sqlite":
	case "postgres":
		if *pgURL == "" {
			return fmt.Errorf("-store postgres needs -pg-url (scripts/bench.sh -store postgres starts a cluster)")
		}
		for _, n := range []int{1, 2} {
			t, err := startKeygatePostgres(*keygateBin, dir, *pgURL, *pgData, fmt.Sprintf("keygate_pg%d", n), n)
			if err != nil {
				return fmt.Errorf("starting keygate on PostgreSQL: %w", err)
			}
			defer stop(t)
			targets = append(targets, t)
			names = append(names, fmt.Sprintf("keygate (PostgreSQL, %d replica%s)", n, map[bool]string{true: "s"}[n > 1]))
		}
	default:
		return fmt.Errorf("-store: want sqlite or postgres, got %q", *storeName)
	}
	for _, t := range targets {
		if err := seed(client, t, *ncompanies, *conns); err != nil {
			return fmt.Errorf("seeding %s: %w", t.name, err)
		}
	}

	phases := []struct {
		name    string
		setup   func(*http.Client, *target, int) (*load, error)
		refresh bool
	}{
		{"POST /api/v1/auth/login", loadLogin, false},
		{"POST /api/v1/auth/refresh", loadRefresh, true},
		{"GET /api/v1/auth/me", loadMe, false},
	}
	var storage string
	var table bytes.Buffer
	host, _ := os.Hostname()
	fmt.Fprintf(&table, "%d connections, %s per phase, %d companies seeded, %d extra keys in keygate's database, keygate with database.synchronous=FULL, ES256; machine: %s, %d CPUs\n\n",
		*conns, *duration, *ncompanies, *seedKeys, host, numCPU())
	fmt.Fprintln(&table, "| endpoint | server | req/s | p50 | p99 | errors | CPU/req | DB CPU/req | peak RSS | vs floor: req/s | vs floor: p99 | vs reference: req/s | vs reference: p99 |")
	fmt.Fprintln(&table, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, ph := range phases {
		var before int
		if ph.refresh {
			if before, err = countFamilies(dir); err != nil {
				return err
			}
		}
		var profiled chan error
		if *kgProfile != "" && strings.Contains(ph.name, "/auth/"+*profilePhase) {
			profiled = make(chan error, 1)
			go func() { profiled <- fetchProfile(kg, *kgProfile, phaseLength(len(targets), *duration)) }()
		}
		res, err := compare(client, targets, *conns, *duration, ph.setup)
		if profiled != nil {
			if perr := <-profiled; perr != nil {
				return fmt.Errorf("profiling keygate: %w", perr)
			}
		}
		if err != nil {
			return err
		}
		rr, fr, kr := res[0], res[1], res[2]
		if ph.refresh {
			after, err := countFamilies(dir)
			if err != nil {
				return err
			}
			storage = fmt.Sprintf("\nRefresh storage: keygate's refresh_families table held %d rows before the refresh phase and %d after it (%+d), "+
				"across the phase's %d set-up logins and %d refreshes.\n", before, after, after-before, *conns, kr.Sent)
		}
		ratio := func(a, b float64) string { return fmt.Sprintf("%.2f", a/b) }
		for i, r := range res {
			dbCPU := "-"
			if targets[i].pgData != "" {
				dbCPU = us(r.DBCPUPerReq)
			}
			fmt.Fprintf(&table, "| %s | %s | %.0f | %s | %s | %d | %s | %s | %.0f MiB | %s | %s | %s | %s |\n",
				ph.name, names[i], r.rps(), ms(r.P50), ms(r.P99), r.Errors, us(r.CPUPerReq), dbCPU, r.PeakRSSMiB,
				ratio(r.rps(), fr.rps()), ratio(float64(r.P99), float64(fr.P99)),
				ratio(r.rps(), rr.rps()), ratio(float64(r.P99), float64(rr.P99)))
		}
	}
	table.WriteString(storage)
	fmt.Print(table.String())
	if *out != "" {
		return os.WriteFile(*out, table.Bytes(), 0o644)
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d.Nanoseconds())/1000) }

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return bytes.Count(b, []byte("\nprocessor")) + 1
}
