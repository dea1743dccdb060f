package client_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

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

func TestNoTokenOnRedirectToAnotherHost(t *testing.T) {
	k := startKeygate(t)
	c := newClient(t, k, client.Config{})
	var gotOther string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { gotOther = r.Header.Get("R-Auth") }))
	defer other.Close()
	otherURL := strings.Replace(other.URL, "127.0.0.1", "localhost", 1) // another host, same machine
	var gotFirst string
	first := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotFirst = r.Header.Get("R-Auth")
		http.Redirect(w, r, otherURL, http.StatusFound)
	}))
	defer first.Close()
	resp, err := c.HTTPClient(nil).Get(first.URL)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if gotFirst == "" || gotOther != "" {
		t.Errorf("R-Auth to the first host %t, to the redirect's host %t; want true, false", gotFirst != "", gotOther != "")
	}
}

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
