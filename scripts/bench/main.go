// Command bench measures keygate against its floor: the same HTTP stack and
// token signing with storage in memory. scripts/bench.sh builds and runs it;
// see BENCHMARKS.md.
//
//	bench run -keygate ./keygate [-duration 10s] [-conns 32] [-companies 1000]
//	bench floor-server            (started by run; prints its address and a partner key)
package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: bench run|floor-server [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = run(os.Args[2:])
	case "floor-server":
		err = floorServer(os.Args[2:])
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
	partnerKey string
	companies  []string // company API keys
}

type result struct {
	Sent       int // requests, warm-up included
	Requests   int // requests measured
	Errors     int
	Seconds    float64
	P50, P99   time.Duration
	CPUPerReq  time.Duration // server CPU time per request
	PeakRSSMiB float64
}

func (r result) rps() float64 { return float64(r.Requests) / r.Seconds }

func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	keygateBin := fs.String("keygate", "./keygate", "keygate binary")
	duration := fs.Duration("duration", 10*time.Second, "duration of each measured phase")
	conns := fs.Int("conns", 32, "concurrent connections")
	ncompanies := fs.Int("companies", 1000, "companies to seed through the API")
	out := fs.String("out", "", "also write the table to this file")
	seedKeys := fs.Int("seed-keys", 0, "extra partner keys written straight into keygate's database before it starts (scale test)")
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

	floor, err := startFloor(self)
	if err != nil {
		return fmt.Errorf("starting floor: %w", err)
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
	for _, t := range []*target{floor, kg} {
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
	fmt.Fprintln(&table, "| endpoint | server | req/s | p50 | p99 | errors | CPU/req | peak RSS | vs floor: req/s | vs floor: p99 |")
	fmt.Fprintln(&table, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, ph := range phases {
		var before int
		if ph.refresh {
			if before, err = countFamilies(dir); err != nil {
				return err
			}
		}
		fr, kr, err := compare(client, floor, kg, *conns, *duration, ph.setup)
		if err != nil {
			return err
		}
		if ph.refresh {
			after, err := countFamilies(dir)
			if err != nil {
				return err
			}
			storage = fmt.Sprintf("\nRefresh storage: keygate's refresh_families table held %d rows before the refresh phase and %d after it (%+d), "+
				"across the phase's %d set-up logins and %d refreshes.\n", before, after, after-before, *conns, kr.Sent)
		}
		row := func(name string, r result, ratio bool) {
			rr, pr := "1.00", "1.00"
			if ratio {
				rr = fmt.Sprintf("%.2f", r.rps()/fr.rps())
				pr = fmt.Sprintf("%.2f", float64(r.P99)/float64(fr.P99))
			}
			fmt.Fprintf(&table, "| %s | %s | %.0f | %s | %s | %d | %s | %.0f MiB | %s | %s |\n",
				ph.name, name, r.rps(), ms(r.P50), ms(r.P99), r.Errors, us(r.CPUPerReq), r.PeakRSSMiB, rr, pr)
		}
		row("floor (memory)", fr, false)
		row("keygate (SQLite)", kr, true)
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

func newClient(conns int) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        conns * 2,
			MaxIdleConnsPerHost: conns * 2,
			MaxConnsPerHost:     conns,
			DisableCompression:  true,
		},
	}
}

// startKeygate runs the real binary on a fresh database with default
// settings (synchronous FULL) and the rate limits lifted, after minting a
// partner with the CLI.
func startKeygate(bin, dir string) (*target, error) {
	env := append(os.Environ(),
		"KEYGATE_DATABASE_PATH="+filepath.Join(dir, "keygate.db"),
		"KEYGATE_SERVER_ADDR=127.0.0.1:0",
		"KEYGATE_LOG_LEVEL=warn",
		"KEYGATE_RATELIMIT_LOGIN_FAILURES_PER_MINUTE=0",
		"KEYGATE_RATELIMIT_LOGIN_PER_KEY_PER_MINUTE=0",
		"KEYGATE_RATELIMIT_REFRESH_PER_FAMILY_PER_MINUTE=0",
		"KEYGATE_RATELIMIT_API_PER_MINUTE=0",
	)
	mint := exec.Command(bin, "partner", "create", "--name", "bench", "--json")
	mint.Env, mint.Dir = env, dir
	outb, err := mint.Output()
	if err != nil {
		return nil, fmt.Errorf("minting partner: %w", err)
	}
	var minted struct{ APIKey string }
	if err := json.Unmarshal(outb, &minted); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env, cmd.Dir = append(env, "KEYGATE_LOG_LEVEL=info"), dir // the default, access log included
	addr, err := startAndWait(cmd, func(line string) (string, bool) {
		var rec struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "keygate listening" {
			return rec.Addr, true
		}
		return "", false
	})
	if err != nil {
		return nil, err
	}
	return &target{name: "keygate", cmd: cmd, base: "http://" + addr, partnerKey: minted.APIKey}, nil
}

func startFloor(self string) (*target, error) {
	cmd := exec.Command(self, "floor-server")
	var key string
	addr, err := startAndWait(cmd, func(line string) (string, bool) {
		if k, ok := strings.CutPrefix(line, "KEY "); ok {
			key = k
		}
		if a, ok := strings.CutPrefix(line, "ADDR "); ok {
			return a, true
		}
		return "", false
	})
	if err != nil {
		return nil, err
	}
	return &target{name: "floor", cmd: cmd, base: "http://" + addr, partnerKey: key}, nil
}

// startAndWait starts cmd and scans its stdout and stderr until found
// reports the listening address, or 30 seconds pass.
func startAndWait(cmd *exec.Cmd, found func(string) (string, bool)) (string, error) {
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return "", err
	}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sent := false
		for sc.Scan() {
			if a, ok := found(sc.Text()); ok && !sent {
				addrc <- a
				sent = true
			}
		}
	}()
	select {
	case a := <-addrc:
		return a, nil
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		return "", errors.New("server did not report its address within 30s")
	}
}

func stop(t *target) {
	t.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { t.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.cmd.Process.Kill()
	}
}

func post(c *http.Client, url, jwt string, body any, into any) (int, error) {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if jwt != "" {
		req.Header.Set("R-Auth", jwt)
	}
	return do(c, req, into)
}

func do(c *http.Client, req *http.Request, into any) (int, error) {
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if into != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(body, into); err != nil {
			return resp.StatusCode, err
		}
	}
	return resp.StatusCode, nil
}

type tokenPair struct {
	JWT          string `json:"jwt"`
	RefreshToken string `json:"refreshToken"`
}

// seed logs the partner in and creates the companies through the API.
func seed(c *http.Client, t *target, n, conns int) error {
	var partner tokenPair
	if code, err := post(c, t.base+"/api/v1/auth/login", "", map[string]string{"apiKey": t.partnerKey}, &partner); err != nil || code != 200 {
		return fmt.Errorf("partner login: %d %v", code, err)
	}
	t.companies = make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, conns)
	for range conns {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				var created struct{ APIKey string }
				code, err := post(c, t.base+"/api/v1/companies", partner.JWT, map[string]string{"name": "company " + strconv.Itoa(i), "externalId": "ext-" + strconv.Itoa(i)}, &created)
				if err != nil || code != 201 {
					errc <- fmt.Errorf("create company: %d %v", code, err)
					return
				}
				t.companies[i] = created.APIKey
			}
		})
	}
	wg.Wait()
	close(errc)
	return <-errc
}

// rounds is how many slices each measured phase is cut into. The floor and
// keygate take turns slice by slice (F K K F F K ...), so that both see the
// same machine, drift included; their ratio is then far steadier than two
// long runs one after the other.
const rounds = 6

// settle is the pause after each slice: longer than keygate's audit flush
// interval (1 s).
const settle = 1200 * time.Millisecond

// compare warms both targets up, then measures them in interleaved slices
// adding up to d each.
func compare(c *http.Client, floor, kg *target, conns int, d time.Duration, setup func(*http.Client, *target, int) (*load, error)) (fr, kr result, err error) {
	fl, err := setup(c, floor, conns)
	if err != nil {
		return result{}, result{}, err
	}
	kl, err := setup(c, kg, conns)
	if err != nil {
		return result{}, result{}, err
	}
	for _, l := range []*load{fl, kl} {
		l.run(d / 5)
		l.reset()
	}
	for r := range rounds {
		order := []*load{fl, kl}
		if r%2 == 1 {
			order = []*load{kl, fl}
		}
		for _, l := range order {
			l.run(d / rounds)
		}
	}
	if fr, err = fl.result(); err != nil {
		return result{}, result{}, err
	}
	kr, err = kl.result()
	return fr, kr, err
}

// load is one endpoint's workload against one target: a worker per
// connection, each keeping its own state (a refresh token, say) from one
// slice to the next, and what the slices measured.
type load struct {
	t       *target
	workers []func() bool
	lat     []time.Duration
	sent    int // every request, warm-up included
	errs    int
	secs    float64
	cpu     time.Duration
}

func newLoad(t *target, conns int, setup func(worker int) (func() bool, error)) (*load, error) {
	l := &load{t: t, workers: make([]func() bool, conns)}
	for i := range l.workers {
		w, err := setup(i)
		if err != nil {
			return nil, err
		}
		l.workers[i] = w
	}
	return l, nil
}

// run drives every worker for d, adding latencies, errors and the server's
// CPU time to what l holds.
func (l *load) run(d time.Duration) {
	cpu0 := cpuTime(l.t.cmd.Process.Pid)
	lat := make([][]time.Duration, len(l.workers))
	errs := make([]int, len(l.workers))
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for i, w := range l.workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				t0 := time.Now()
				ok := w()
				lat[i] = append(lat[i], time.Since(t0))
				if !ok {
					errs[i]++
				}
			}
		})
	}
	wg.Wait()
	l.secs += time.Since(start).Seconds()
	// Let the work the slice left behind (keygate's once-a-second audit
	// batch, a collection under way) finish before the other server's
	// slice starts, and count its CPU here, to its owner.
	time.Sleep(settle)
	l.cpu += cpuTime(l.t.cmd.Process.Pid) - cpu0
	for i := range lat {
		l.sent += len(lat[i])
		l.lat = append(l.lat, lat[i]...)
		l.errs += errs[i]
	}
}

func (l *load) reset() { l.lat, l.errs, l.secs, l.cpu = nil, 0, 0, 0 }

func (l *load) result() (result, error) {
	if len(l.lat) == 0 {
		return result{}, errors.New("no requests completed")
	}
	all := slices.Clone(l.lat)
	slices.Sort(all)
	return result{
		Sent:       l.sent,
		Requests:   len(all),
		Errors:     l.errs,
		Seconds:    l.secs,
		P50:        all[len(all)/2],
		P99:        all[len(all)*99/100],
		CPUPerReq:  l.cpu / time.Duration(len(all)),
		PeakRSSMiB: peakRSS(l.t.cmd.Process.Pid),
	}, nil
}

func loadLogin(c *http.Client, t *target, conns int) (*load, error) {
	return newLoad(t, conns, func(w int) (func() bool, error) {
		i := w
		return func() bool {
			key := t.companies[i%len(t.companies)]
			i += conns
			code, err := post(c, t.base+"/api/v1/auth/login", "", map[string]string{"apiKey": key}, nil)
			return err == nil && code == 200
		}, nil
	})
}

// loginCompany logs in as the company of worker w, to set up a phase.
func loginCompany(c *http.Client, t *target, w int) (tokenPair, error) {
	var p tokenPair
	code, err := post(c, t.base+"/api/v1/auth/login", "", map[string]string{"apiKey": t.companies[w%len(t.companies)]}, &p)
	if err != nil || code != 200 {
		return tokenPair{}, fmt.Errorf("login of company %d: %d %v", w, code, err)
	}
	return p, nil
}

// loadRefresh gives each connection its own token family and feeds every
// successor back, so each refresh token is used exactly once.
func loadRefresh(c *http.Client, t *target, conns int) (*load, error) {
	return newLoad(t, conns, func(w int) (func() bool, error) {
		p, err := loginCompany(c, t, w)
		if err != nil {
			return nil, err
		}
		rt := p.RefreshToken
		return func() bool {
			var next tokenPair
			code, err := post(c, t.base+"/api/v1/auth/refresh", "", map[string]string{"refreshToken": rt}, &next)
			if err != nil || code != 200 {
				return false
			}
			rt = next.RefreshToken
			return true
		}, nil
	})
}

func loadMe(c *http.Client, t *target, conns int) (*load, error) {
	return newLoad(t, conns, func(w int) (func() bool, error) {
		p, err := loginCompany(c, t, w)
		if err != nil {
			return nil, err
		}
		return func() bool {
			req, _ := http.NewRequest(http.MethodGet, t.base+"/api/v1/auth/me", nil)
			req.Header.Set("R-Auth", p.JWT)
			code, err := do(c, req, nil)
			return err == nil && code == 200
		}, nil
	})
}

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
