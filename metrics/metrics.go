// Package metrics owns keygate's Prometheus instruments: their names,
// labels and help text, on one registry served by the admin listener. The
// HTTP layer reports into it directly; the store reports its commits
// through a plain function (CommitObserver) and the store and the keyring
// are read through small functions the wiring hands Watch, so neither
// imports Prometheus. A nil *Metrics is valid and records nothing
// (metrics off).
//
// Every label value is drawn from a fixed set: never a key, token, id or
// client address, so that no caller can grow the series without bound.
package metrics

import (
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Sources are what the metrics read at scrape time; Watch registers them.
type Sources struct {
	// SigningKeys counts the loaded signing keys by state.
	SigningKeys func() (active, pending, retired int)
	// StoreFailing reports whether the store's writes are failing now.
	StoreFailing func() bool
}

// Metrics holds keygate's instruments.
type Metrics struct {
	reg            *prometheus.Registry
	httpDuration   *prometheus.HistogramVec
	logins         *prometheus.CounterVec
	refreshes      *prometheus.CounterVec
	rateLimited    *prometheus.CounterVec
	leaked         *prometheus.CounterVec
	commitDuration prometheus.Histogram
	batchSize      prometheus.Histogram
}

// New registers every instrument, the Go and process collectors included,
// and the series of every known label combination at zero: a counter that
// first appears at 1 is invisible to increase() and rate(), so the first
// reuse_detected after a restart would raise no alert. The store may
// report into it before the rest of keygate exists (CommitObserver); the
// gauges read at scrape time come later (Watch).
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_server_request_duration_seconds",
			Help:    "Duration of HTTP requests on the API listener, by route template, method and status.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"http_route", "http_request_method", "http_response_status_code"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_logins_total",
			Help: "Logins by principal kind (from the key's prefix) and outcome.",
		}, []string{"kind", "outcome"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_refreshes_total",
			Help: "Refreshes by outcome; reuse_detected revoked a token family.",
		}, []string{"outcome"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_rate_limited_total",
			Help: "Requests refused with 429, by the limit they hit.",
		}, []string{"limit"}),
		leaked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_leaked_keys_total",
			Help: "Tokens secret scanners reported leaked, by verdict: true_positive is a key of this keygate (revoked), false_positive is not.",
		}, []string{"label"}),
		commitDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "keygate_store_commit_duration_seconds",
			Help:    "Duration of the store's group commits (SQLite: one transaction and one fsync for many writes).",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1},
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "keygate_store_batch_size",
			Help:    "Writes carried by each group commit.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}),
	}
	reg.MustRegister(m.httpDuration, m.logins, m.refreshes, m.rateLimited, m.leaked, m.commitDuration, m.batchSize,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "keygate_build_info",
		Help:        "Always 1; the labels say which keygate is running.",
		ConstLabels: prometheus.Labels{"version": Version(), "goversion": runtime.Version()},
	}, func() float64 { return 1 }))
	for _, kind := range LoginKinds {
		for _, outcome := range LoginOutcomes {
			m.logins.WithLabelValues(kind, outcome)
		}
	}
	for _, outcome := range RefreshOutcomes {
		m.refreshes.WithLabelValues(outcome)
	}
	for _, limit := range Limits {
		m.rateLimited.WithLabelValues(limit)
	}
	for _, label := range LeakLabels {
		m.leaked.WithLabelValues(label)
	}
	return m
}

// Watch registers the gauges read at scrape time. Call it once, when the
// keyring and the store exist; a nil source is left out.
func (m *Metrics) Watch(src Sources) {
	if m == nil {
		return
	}
	reg := m.reg
	if src.SigningKeys != nil {
		for i, state := range []string{"active", "pending", "retired"} {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name:        "keygate_signing_keys",
				Help:        "Signing keys this process has loaded, by state: active signs, pending is published but not yet signing, retired is still published for verification.",
				ConstLabels: prometheus.Labels{"state": state},
			}, func() float64 {
				a, p, r := src.SigningKeys()
				return float64([]int{a, p, r}[i])
			}))
		}
	}
	if src.StoreFailing != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keygate_store_failing",
			Help: "1 while the store's writes fail (full disk, read-only file, unreachable database), else 0.",
		}, func() float64 {
			if src.StoreFailing() {
				return 1
			}
			return 0
		}))
	}
}

// Version is keygate's version from the build information: the module
// version of a released build, "(devel)" for one built from a checkout,
// with the VCS revision when the build recorded one.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += "+" + s.Value[:12]
		}
	}
	return v
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Request records one HTTP request. route is the route template, or
// "unmatched"; a method outside HTTP's standard ones is "_OTHER".
func (m *Metrics) Request(route, method string, status int, took time.Duration) {
	if m == nil {
		return
	}
	m.httpDuration.WithLabelValues(route, knownMethod(method), statusText(status)).Observe(took.Seconds())
}

// Login outcomes and kinds.
const (
	OutcomeOK          = "ok"
	OutcomeInvalidKey  = "invalid_key"
	OutcomeRateLimited = "rate_limited"
	OutcomeError       = "error"

	KindPartner = "partner"
	KindCompany = "company"
	KindUnknown = "unknown"
)

// The label values keygate_logins_total takes.
var (
	LoginKinds    = []string{KindPartner, KindCompany, KindUnknown}
	LoginOutcomes = []string{OutcomeOK, OutcomeInvalidKey, OutcomeRateLimited, OutcomeError}
)

// Login counts a login attempt.
func (m *Metrics) Login(kind, outcome string) {
	if m == nil {
		return
	}
	m.logins.WithLabelValues(kind, outcome).Inc()
}

// Refresh outcomes, besides OutcomeOK, OutcomeRateLimited and OutcomeError.
const (
	OutcomeGraceRetry    = "grace_retry"
	OutcomeReuseDetected = "reuse_detected"
	OutcomeExpired       = "expired"
	OutcomeInvalid       = "invalid"
)

// RefreshOutcomes are the label values keygate_refreshes_total takes.
var RefreshOutcomes = []string{OutcomeOK, OutcomeGraceRetry, OutcomeReuseDetected, OutcomeExpired, OutcomeInvalid, OutcomeRateLimited, OutcomeError}

// Refresh counts a refresh attempt.
func (m *Metrics) Refresh(outcome string) {
	if m == nil {
		return
	}
	m.refreshes.WithLabelValues(outcome).Inc()
}

// Limits, as keygate_rate_limited_total labels them.
const (
	LimitLoginFailures    = "login_failures"
	LimitLoginPerKey      = "login_per_key"
	LimitRefreshPerFamily = "refresh_per_family"
	LimitAPI              = "api"
)

// Limits are the label values keygate_rate_limited_total takes.
var Limits = []string{LimitLoginFailures, LimitLoginPerKey, LimitRefreshPerFamily, LimitAPI}

// RateLimited counts a request refused by a limit.
func (m *Metrics) RateLimited(limit string) {
	if m == nil {
		return
	}
	m.rateLimited.WithLabelValues(limit).Inc()
}

// Verdicts on a leaked token, as keygate_leaked_keys_total labels them.
const (
	LeakTruePositive  = "true_positive"
	LeakFalsePositive = "false_positive"
)

// LeakLabels are the label values keygate_leaked_keys_total takes.
var LeakLabels = []string{LeakTruePositive, LeakFalsePositive}

// LeakReported counts one token of a leaked-key report by its verdict,
// LeakTruePositive or LeakFalsePositive (anything else is not counted, so
// the series stay two).
func (m *Metrics) LeakReported(label string) {
	if m == nil || label != LeakTruePositive && label != LeakFalsePositive {
		return
	}
	m.leaked.WithLabelValues(label).Inc()
}

// CommitObserver is what the store calls after each commit of its writes
// (store.Options.OnCommit): nil, observing nothing, for nil metrics.
func (m *Metrics) CommitObserver() func(writes int, took time.Duration, err error) {
	if m == nil {
		return nil
	}
	return m.commit
}

// commit records one commit of the store: SQLite's group commits, each
// one transaction and one fsync for every write waiting.
func (m *Metrics) commit(writes int, took time.Duration, _ error) {
	m.commitDuration.Observe(took.Seconds())
	m.batchSize.Observe(float64(writes))
}

func knownMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

// statusTexts spares a conversion per request for the common statuses.
var statusTexts = func() map[int]string {
	m := make(map[int]string)
	for _, c := range []int{200, 201, 204, 304, 400, 401, 403, 404, 405, 408, 409, 413, 415, 429, 431, 499, 500, 503} {
		m[c] = strconv.Itoa(c)
	}
	return m
}()

func statusText(code int) string {
	if s, ok := statusTexts[code]; ok {
		return s
	}
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code)
}
