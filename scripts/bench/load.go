package main

// Measuring: interleaved slices, and the workload of each phase.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"
)

// defaultRounds is how many slices each measured phase is cut into
// (-rounds). The servers take turns slice by slice, each round in a
// different order (F K R, K R F, R F K, ...), so that all see the same
// machine, drift included; their ratios are then far steadier than long
// runs one after the other.
const defaultRounds = 6

// settle is the pause after each slice: longer than keygate's audit flush
// interval (1 s).
const settle = 1200 * time.Millisecond

// compare warms every target up (for d/5, and for as long as a load's
// warm-up needs beyond that: a login load uses every company's key once, so
// that its keys are "in use" when measuring starts), then measures them in
// rounds of interleaved slices adding up to d each; results are in the
// order of targets. measuring, if set, is called as the rounds begin.
func compare(c *http.Client, targets []*target, conns, rounds int, d time.Duration, setup func(*http.Client, *target, int) (*load, error), measuring func()) ([]result, error) {
	loads := make([]*load, len(targets))
	for i, t := range targets {
		l, err := setup(c, t, conns)
		if err != nil {
			return nil, err
		}
		loads[i] = l
	}
	for _, l := range loads {
		l.run(d / 5)
		for l.warm != nil && !l.warm() {
			l.run(d / 5)
		}
		l.reset()
	}
	if measuring != nil {
		measuring()
	}
	for r := range rounds {
		for i := range loads {
			loads[(i+r)%len(loads)].run(d / time.Duration(rounds))
		}
	}
	out := make([]result, len(loads))
	for i, l := range loads {
		res, err := l.result()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", l.t.name, err)
		}
		out[i] = res
	}
	return out, nil
}

// load is one endpoint's workload against one target: a worker per
// connection, each keeping its own state (a refresh token, say) from one
// slice to the next, and what the slices measured.
type load struct {
	t       *target
	workers []func() bool
	lat     []time.Duration
	sent    int         // every request, warm-up included
	warm    func() bool // if set, whether the warm-up may end
	errs    int
	secs    float64
	cpu     time.Duration
	dbCPU   time.Duration
	slices  []float64 // each slice's requests per second, round by round
	cpus    []float64 // each slice's server CPU seconds per request
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
	cpu0, db0 := l.t.cpuTime(), l.t.dbCPUTime()
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
	took := time.Since(start).Seconds()
	l.secs += took
	// Let the work the slice left behind (keygate's once-a-second audit
	// batch, a collection under way) finish before the other server's
	// slice starts, and count its CPU here, to its owner.
	time.Sleep(settle)
	cpu := l.t.cpuTime() - cpu0
	l.cpu += cpu
	l.dbCPU += l.t.dbCPUTime() - db0
	n := 0
	for i := range lat {
		n += len(lat[i])
		l.sent += len(lat[i])
		l.lat = append(l.lat, lat[i]...)
		l.errs += errs[i]
	}
	l.slices = append(l.slices, float64(n)/took)
	l.cpus = append(l.cpus, cpu.Seconds()/float64(max(n, 1)))
}

func (l *load) reset() {
	l.lat, l.errs, l.secs, l.cpu, l.dbCPU, l.slices, l.cpus = nil, 0, 0, 0, 0, nil, nil
}

func (l *load) result() (result, error) {
	if len(l.lat) == 0 {
		return result{}, errors.New("no requests completed")
	}
	all := slices.Clone(l.lat)
	slices.Sort(all)
	return result{
		Sent:        l.sent,
		Requests:    len(all),
		Errors:      l.errs,
		Seconds:     l.secs,
		P50:         all[len(all)/2],
		P99:         all[len(all)*99/100],
		CPUPerReq:   l.cpu / time.Duration(len(all)),
		DBCPUPerReq: l.dbCPU / time.Duration(len(all)),
		PeakRSSMiB:  l.t.peakRSS(),
		Slices:      l.slices,
		CPUSlices:   l.cpus,
	}, nil
}

// loadLogin logs in with the company keys in turn, worker w taking every
// conns-th one from the w-th; its warm-up lasts until every key was used.
func loadLogin(c *http.Client, t *target, conns int) (*load, error) {
	next := make([]int, conns) // each worker's next index into t.companies
	l, err := newLoad(t, conns, func(w int) (func() bool, error) {
		next[w] = w
		return func() bool {
			key := t.companies[next[w]%len(t.companies)]
			next[w] += conns
			code, err := post(c, t.at(w)+"/api/v1/auth/login", "", map[string]string{"apiKey": key}, nil)
			return err == nil && code == 200
		}, nil
	})
	if err != nil {
		return nil, err
	}
	l.warm = func() bool { // between runs: no worker is running
		return slices.Min(next) >= len(t.companies)
	}
	return l, nil
}

// loginCompany logs in as the company of worker w, to set up a phase.
func loginCompany(c *http.Client, t *target, w int) (tokenPair, error) {
	var p tokenPair
	code, err := post(c, t.at(w)+"/api/v1/auth/login", "", map[string]string{"apiKey": t.companies[w%len(t.companies)]}, &p)
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
			code, err := post(c, t.at(w)+"/api/v1/auth/refresh", "", map[string]string{"refreshToken": rt}, &next)
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
			req, _ := http.NewRequest(http.MethodGet, t.at(w)+"/api/v1/auth/me", nil)
			req.Header.Set("R-Auth", p.JWT)
			code, err := do(c, req, nil)
			return err == nil && code == 200
		}, nil
	})
}
