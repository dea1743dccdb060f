package client_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"keygate/client"
)

// downstream is a service that refuses the first token it sees and accepts
// any other, recording what each request carried.
type downstream struct {
	srv     *httptest.Server
	mu      sync.Mutex
	refused string
	seen    []string // R-Auth, body
}

func newDownstream(t *testing.T) *downstream {
	d := &downstream{}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		tok := r.Header.Get("R-Auth")
		d.mu.Lock()
		defer d.mu.Unlock()
		d.seen = append(d.seen, tok+" "+string(body))
		if d.refused == "" {
			d.refused = tok
		}
		if tok == "" || tok == d.refused {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = w.Write(body)
	}))
	t.Cleanup(d.srv.Close)
	return d
}

func (d *downstream) requests() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.seen...)
}

func TestDownstream401RefreshesOnceAndRetries(t *testing.T) {
	for _, tc := range []struct {
		name    string
		request func(url string) *http.Request
		body    string
		retried bool
	}{
		{"GET", func(url string) *http.Request { r, _ := http.NewRequest(http.MethodGet, url, nil); return r }, "", true},
		{"POST with a replayable body", func(url string) *http.Request {
			r, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("order 42"))
			return r
		}, "order 42", true},
		{"POST with a one-shot body", func(url string) *http.Request {
			r, _ := http.NewRequest(http.MethodPost, url, io.NopCloser(strings.NewReader("order 42")))
			return r
		}, "order 42", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := startKeygate(t)
			d := newDownstream(t)
			c := newClient(t, k, client.Config{})
			resp, err := c.HTTPClient(nil).Do(tc.request(d.srv.URL))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			reqs := d.requests()
			if !tc.retried {
				if resp.StatusCode != http.StatusUnauthorized || len(reqs) != 1 || k.refreshes() != 0 {
					t.Fatalf("%d after %d requests, %d refreshes; want the 401 as it came", resp.StatusCode, len(reqs), k.refreshes())
				}
				return
			}
			if resp.StatusCode != http.StatusOK || string(body) != tc.body {
				t.Fatalf("%d %q, want 200 %q", resp.StatusCode, body, tc.body)
			}
			if len(reqs) != 2 || k.refreshes() != 1 || k.logins() != 1 {
				t.Fatalf("%d requests, %d refreshes, %d logins; want 2, 1, 1", len(reqs), k.refreshes(), k.logins())
			}
			issued := k.tokens()
			if reqs[0] != issued[0].JWT+" "+tc.body || reqs[1] != issued[1].JWT+" "+tc.body {
				t.Errorf("the downstream saw %q", reqs)
			}
		})
	}
}

// TestDownstream401ForcesOneRefresh: many requests refused with the same
// token share one refresh; a downstream refusing fresh tokens too does not
// make the client refresh on every request.
func TestDownstream401ForcesOneRefresh(t *testing.T) {
	k := startKeygate(t)
	d := newDownstream(t)
	c := newClient(t, k, client.Config{})
	hc := c.HTTPClient(nil)
	mustToken(t, c)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			resp, err := hc.Get(d.srv.URL)
			if err != nil {
				t.Error(err)
				return
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("status %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	if k.refreshes() != 1 {
		t.Fatalf("%d refreshes for 20 requests refused with one token", k.refreshes())
	}

	d.mu.Lock()
	d.refused = mustToken(t, c) // now the fresh token is refused too
	d.mu.Unlock()
	for range 3 {
		resp, err := hc.Get(d.srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if k.refreshes() != 1 {
		t.Errorf("%d refreshes: a downstream refusing fresh tokens made the client refresh again", k.refreshes())
	}
}

// hop is a server recording whether each request carried R-Auth, and
// answering by its path: /to/<url-escaped URL> redirects there.
type hop struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []bool // whether each request carried R-Auth
}

func newHop(t *testing.T) *hop {
	t.Helper()
	h := &hop{}
	h.srv = httptest.NewServer(h)
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hop) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.seen = append(h.seen, r.Header.Get("R-Auth") != "")
	h.mu.Unlock()
	if to, ok := strings.CutPrefix(r.URL.Path, "/to/"); ok {
		target, err := url.PathUnescape(to)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		http.Redirect(w, r, target, http.StatusFound)
	}
}

func (h *hop) requests() []bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]bool(nil), h.seen...)
}

// via is a path on srv that redirects to target.
func via(srvURL, target string) string { return srvURL + "/to/" + url.PathEscape(target) }

// TestRedirectsKeepTheTokenHome: a redirect gets R-Auth only on the scheme
// and host of the request the caller made: not on another host, and not on
// that host's own redirects either (A -> B -> B).
func TestRedirectsKeepTheTokenHome(t *testing.T) {
	k := startKeygate(t)
	c := newClient(t, k, client.Config{})
	a, b := newHop(t), newHop(t)
	bURL := strings.Replace(b.srv.URL, "127.0.0.1", "localhost", 1) // another host, same machine
	for _, tc := range []struct {
		name         string
		url          string
		wantA, wantB []bool // R-Auth on each request A and B saw
	}{
		{"A -> A", via(a.srv.URL, a.srv.URL+"/end"), []bool{true, true}, nil},
		{"A -> B", via(a.srv.URL, bURL+"/end"), []bool{true}, []bool{false}},
		{"A -> B -> B", via(a.srv.URL, via(bURL, bURL+"/end")), []bool{true}, []bool{false, false}},
		{"A -> B -> A", via(a.srv.URL, via(bURL, a.srv.URL+"/end")), []bool{true, true}, []bool{false}},
		{"A -> B -> B -> B", via(a.srv.URL, via(bURL, via(bURL, bURL+"/end"))), []bool{true}, []bool{false, false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a.mu.Lock()
			a.seen = nil
			a.mu.Unlock()
			b.mu.Lock()
			b.seen = nil
			b.mu.Unlock()
			resp, err := c.HTTPClient(nil).Get(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if got := a.requests(); !slices.Equal(got, tc.wantA) {
				t.Errorf("R-Auth on A's requests: %v, want %v", got, tc.wantA)
			}
			if got := b.requests(); !slices.Equal(got, tc.wantB) {
				t.Errorf("R-Auth on B's requests: %v, want %v", got, tc.wantB)
			}
		})
	}
}

// TestNoTokenOnDowngrade: a redirect from https to http on the same host
// and port does not get R-Auth: it would cross the network in the clear.
func TestNoTokenOnDowngrade(t *testing.T) {
	k := startKeygate(t)
	c := newClient(t, k, client.Config{})
	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler()) // for its certificate and a client trusting it
	tlsSrv.Close()
	var mu sync.Mutex
	var seen []string
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, fmt.Sprintf("%s %s %t", map[bool]string{true: "https", false: "http"}[r.TLS != nil], r.URL.Path, r.Header.Get("R-Auth") != ""))
			mu.Unlock()
			if r.URL.Path == "/start" {
				http.Redirect(w, r, "http://"+r.Host+"/plain", http.StatusFound)
			}
		}),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(tlsOrPlain{ln, tlsSrv.TLS}) }()
	t.Cleanup(func() { _ = srv.Close() })

	resp, err := c.HTTPClient(tlsSrv.Client().Transport).Get("https://" + ln.Addr().String() + "/start")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"https /start true", "http /plain false"}; fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("the server saw %q, want %q", seen, want)
	}
}

// tlsOrPlain serves TLS and plain HTTP on one listener, by the first byte
// each connection sends (22 opens a TLS handshake).
type tlsOrPlain struct {
	net.Listener
	config *tls.Config
}

func (l tlsOrPlain) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	first, err := br.Peek(1)
	_ = conn.SetReadDeadline(time.Time{})
	peeked := &peekedConn{Conn: conn, r: br}
	if err == nil && first[0] == 22 {
		return tls.Server(peeked, l.config), nil
	}
	return peeked, nil
}

// peekedConn reads first what was peeked from it.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

func TestTransportDoesNotChangeTheRequest(t *testing.T) {
	k := startKeygate(t)
	d := newDownstream(t)
	c := newClient(t, k, client.Config{})
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, d.srv.URL, bytes.NewReader([]byte("x")))
	resp, err := c.HTTPClient(http.DefaultTransport).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if req.Header.Get("R-Auth") != "" {
		t.Error("the caller's request got R-Auth set")
	}
}
