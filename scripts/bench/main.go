// Command bench measures keygate against its floor (keygate itself over the
// in-memory store) and a minimal reference handler (Gin, golang-jwt and a
// map: see reference.go). scripts/bench.sh builds and runs it; see
// BENCHMARKS.md.
//
//	bench run -keygate ./keygate [-duration 10s] [-conns 32] [-companies 1000] [-metrics on|off|both] [-rounds 6] [-phases login,refresh,me]
//	bench floor-server [-metrics=false] (started by run; prints its address and a partner key)
//	bench reference-server        (likewise)
package main

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
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
	metricsOff bool      // started without metrics (no admin listener)
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
	Slices      []float64     // each measured slice's requests per second
	CPUSlices   []float64     // each measured slice's server CPU seconds per request
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
	kgProfile := fs.String("keygate-cpuprofile", "", "write a CPU profile of keygate (with -scale-companies, the scale test's) during one phase (-profile-phase) to this file")
	profilePhase := fs.String("profile-phase", "refresh", "the phase -keygate-cpuprofile covers: login, refresh or me")
	heapProfile := fs.String("keygate-heapprofile", "", "write keygate's heap profile, after a collection, to this file once the phases have run; and its memory map summary (smaps_rollup) beside it, with .smaps")
	scaleCompanies := fs.Int("scale-companies", 0, "also run a second keygate seeded with this many companies, measured in the same turns as the first, and print its throughput over the first's (the scale test: noise-free, unlike two runs minutes apart)")
	seedKeys := fs.Int("seed-keys", 0, "extra partner keys written straight into keygate's database before it starts (scale test)")
	storeName := fs.String("store", "sqlite", "sqlite, or postgres: also keygate on PostgreSQL, one replica and two")
	pgURL := fs.String("pg-url", "", "-store postgres: the cluster's URL (scripts/bench.sh starts one)")
	pgData := fs.String("pg-data", "", "-store postgres: the cluster's data directory, to read its CPU time")
	metricsMode := fs.String("metrics", "on", "on: keygate with its admin listener and metrics, as by default; off: neither, in keygate and the floor; both: each of the floor and keygate twice, with and without, measured in the same turns")
	rounds := fs.Int("rounds", defaultRounds, "turns each phase is cut into (more resolve smaller differences)")
	phaseList := fs.String("phases", "login,refresh,me", "the phases to measure, comma-separated")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !slices.Contains([]string{"on", "off", "both"}, *metricsMode) {
		return fmt.Errorf("-metrics: want on, off or both, got %q", *metricsMode)
	}
	if (*kgProfile != "" || *heapProfile != "") && *metricsMode == "off" {
		return fmt.Errorf("-keygate-cpuprofile and -keygate-heapprofile need keygate's admin listener: not with -metrics off")
	}
	if *rounds < 1 {
		return fmt.Errorf("-rounds: want at least 1")
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
	off := *metricsMode == "off"
	floor, err := startSelf(self, "floor-server", "floor", append(floorArgs, "-metrics="+strconv.FormatBool(!off))...)
	if err != nil {
		return fmt.Errorf("starting the floor: %w", err)
	}
	defer stop(floor)
	floor.metricsOff = off
	if *seedKeys > 0 {
		if err := seedStore(filepath.Join(dir, "keygate.db"), *seedKeys); err != nil {
			return fmt.Errorf("seeding keys: %w", err)
		}
	}
	kg, err := startKeygate(*keygateBin, dir, !off)
	if err != nil {
		return fmt.Errorf("starting keygate: %w", err)
	}
	defer stop(kg)

	client := newClient(*conns)
	targets := []*target{ref, floor, kg}
	names := []string{"reference (Gin + map)", "floor (keygate, memory)", "keygate (SQLite)"}
	if off {
		names[1], names[2] = "floor (keygate, memory), metrics off", "keygate (SQLite), metrics off"
	}
	if *metricsMode == "both" {
		floorOff, err := startSelf(self, "floor-server", "floor", "-metrics=false")
		if err != nil {
			return fmt.Errorf("starting the floor without metrics: %w", err)
		}
		defer stop(floorOff)
		floorOff.metricsOff = true
		kgOff, err := startKeygate(*keygateBin, filepath.Join(dir, "metrics-off"), false)
		if err != nil {
			return fmt.Errorf("starting keygate without metrics: %w", err)
		}
		defer stop(kgOff)
		targets = append(targets, floorOff, kgOff)
		names = append(names, "floor (keygate, memory), metrics off", "keygate (SQLite), metrics off")
	}
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
	scaled := -1 // the index of the scale test's keygate in targets
	if *scaleCompanies > 0 {
		t, err := startKeygate(*keygateBin, filepath.Join(dir, "scale"), !off)
		if err != nil {
			return fmt.Errorf("starting keygate for the scale test: %w", err)
		}
		defer stop(t)
		scaled = len(targets)
		targets = append(targets, t)
		names = append(names, fmt.Sprintf("keygate (SQLite), %d companies", *scaleCompanies))
	}
	for i, t := range targets {
		n := *ncompanies
		if i == scaled {
			n = *scaleCompanies
		}
		if err := seed(client, t, n, *conns); err != nil {
			return fmt.Errorf("seeding %s: %w", t.name, err)
		}
	}

	allPhases := []struct {
		key     string
		name    string
		setup   func(*http.Client, *target, int) (*load, error)
		refresh bool
	}{
		{"login", "POST /api/v1/auth/login", loadLogin, false},
		{"refresh", "POST /api/v1/auth/refresh", loadRefresh, true},
		{"me", "GET /api/v1/auth/me", loadMe, false},
	}
	phases := allPhases[:0:0]
	for _, ph := range allPhases {
		if slices.Contains(strings.Split(*phaseList, ","), ph.key) {
			phases = append(phases, ph)
		}
	}
	if len(phases) == 0 {
		return fmt.Errorf("-phases: none of login, refresh, me in %q", *phaseList)
	}
	// Each server is compared with the floor of its own metrics setting.
	floorOf := func(i int) int {
		if targets[i].metricsOff && !floor.metricsOff {
			return slices.IndexFunc(targets, func(t *target) bool { return t.name == "floor" && t.metricsOff })
		}
		return 1
	}
	var cost, scale bytes.Buffer
	var storage string
	var table bytes.Buffer
	host, _ := os.Hostname()
	fmt.Fprintf(&table, "%d connections, %s per phase in %d turns, %d companies seeded, %d extra keys in keygate's database, keygate with database.synchronous=FULL, ES256, metrics %s; machine: %s, %d CPUs\n\n",
		*conns, *duration, *rounds, *ncompanies, *seedKeys, *metricsMode, host, numCPU())
	fmt.Fprintln(&table, "| endpoint | server | req/s | p50 | p99 | errors | CPU/req | DB CPU/req | peak RSS | vs floor: req/s | vs floor: p99 | vs reference: req/s | vs reference: p99 |")
	fmt.Fprintln(&table, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, ph := range phases {
		var before int
		if ph.refresh {
			if before, err = countFamilies(dir); err != nil {
				return err
			}
		}
		var profiled chan error // set once the profile is being taken
		var measuring func()
		if *kgProfile != "" && strings.Contains(ph.name, "/auth/"+*profilePhase) {
			profTarget := kg
			if scaled >= 0 {
				profTarget = targets[scaled]
			}
			measuring = func() { // the measured rounds, not the warm-ups
				profiled = make(chan error, 1)
				go func() {
					profiled <- fetchProfile(profTarget, *kgProfile, roundsLength(len(targets), *rounds, *duration))
				}()
			}
		}
		res, err := compare(client, targets, *conns, *rounds, *duration, ph.setup, measuring)
		if profiled != nil {
			if perr := <-profiled; perr != nil {
				return fmt.Errorf("profiling keygate: %w", perr)
			}
		}
		if err != nil {
			return err
		}
		rr, kr := res[0], res[2]
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
			fr := res[floorOf(i)]
			dbCPU := "-"
			if targets[i].pgData != "" {
				dbCPU = us(r.DBCPUPerReq)
			}
			fmt.Fprintf(&table, "| %s | %s | %.0f | %s | %s | %d | %s | %s | %.0f MiB | %s | %s | %s | %s |\n",
				ph.name, names[i], r.rps(), ms(r.P50), ms(r.P99), r.Errors, us(r.CPUPerReq), dbCPU, r.PeakRSSMiB,
				ratio(r.rps(), fr.rps()), ratio(float64(r.P99), float64(fr.P99)),
				ratio(r.rps(), rr.rps()), ratio(float64(r.P99), float64(rr.P99)))
		}
		if scaled >= 0 {
			big, small := res[scaled], res[slices.Index(targets, kg)]
			mean, half := ratioInterval(big.Slices, small.Slices)
			fmt.Fprintf(&scale, "| %s | %.3f ± %.3f | %.3f | %.2f | %s / %s | %.0f / %.0f MiB | %d |\n", ph.name,
				mean, half, big.rps()/small.rps(), float64(big.CPUPerReq)/float64(small.CPUPerReq),
				ms(big.P99), ms(small.P99), big.PeakRSSMiB, small.PeakRSSMiB, len(big.Slices))
		}
		if *metricsMode == "both" {
			for _, pair := range [][2]int{{1, 3}, {2, 4}} {
				on, off := res[pair[0]], res[pair[1]]
				mean, half := ratioInterval(on.Slices, off.Slices)
				cpuMean, cpuHalf := ratioInterval(on.CPUSlices, off.CPUSlices)
				fmt.Fprintf(&cost, "| %s | %s | %.3f ± %.3f | %.3f | %.3f ± %.3f | %.3f | %d |\n", ph.name, names[pair[0]],
					mean, half, on.rps()/off.rps(), cpuMean, cpuHalf, float64(on.CPUPerReq)/float64(off.CPUPerReq), len(on.Slices))
			}
		}
	}
	if cost.Len() > 0 {
		table.WriteString("\nMetrics on against off: each turn's throughput (and server CPU per request) with metrics over the same turn's without, mean of the turns ± two standard errors; and the same ratio over the whole phase.\n\n")
		table.WriteString("| endpoint | server | req/s on/off, by turn | req/s on/off, phase | CPU/req on/off, by turn | CPU/req on/off, phase | turns |\n| --- | --- | ---: | ---: | ---: | ---: | ---: |\n")
		table.Write(cost.Bytes())
	}
	if scale.Len() > 0 {
		fmt.Fprintf(&table, "\nScale: keygate with %d companies against keygate with %d, measured in the same turns: each turn's throughput over the same turn's, mean of the turns ± two standard errors; the same ratio over the whole phase; CPU per request, p99 and peak RSS of each.\n\n", *scaleCompanies, *ncompanies)
		table.WriteString("| endpoint | req/s, by turn | req/s, phase | CPU/req | p99 | peak RSS | turns |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
		table.Write(scale.Bytes())
	}
	table.WriteString(storage)
	if *heapProfile != "" {
		if err := fetchHeapProfile(kg, *heapProfile); err != nil {
			return fmt.Errorf("keygate's heap profile: %w", err)
		}
	}
	fmt.Print(table.String())
	if *out != "" {
		return os.WriteFile(*out, table.Bytes(), 0o644)
	}
	return nil
}

// ratioInterval is the mean of the turn-by-turn ratios a[i]/b[i] and two
// standard errors of it: how far the ratio of two servers measured in the
// same turns can be trusted.
func ratioInterval(a, b []float64) (mean, half float64) {
	n := min(len(a), len(b))
	if n == 0 {
		return 0, 0
	}
	rs := make([]float64, n)
	for i := range n {
		rs[i] = a[i] / b[i]
		mean += rs[i]
	}
	mean /= float64(n)
	if n < 2 {
		return mean, 0
	}
	var ss float64
	for _, r := range rs {
		ss += (r - mean) * (r - mean)
	}
	return mean, 2 * math.Sqrt(ss/float64(n-1)/float64(n))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d.Nanoseconds())/1000) }

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return bytes.Count(b, []byte("\nprocessor")) + 1
}
