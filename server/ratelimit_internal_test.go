package server

import (
	"fmt"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

func TestLimitersStayBounded(t *testing.T) {
	const maxTracked = 100
	now := time.Date(2026, 6, 26, 0, 0, 0, 0, time.UTC)
	l := newLimiters(5, maxTracked, func() time.Time { return now })
	for i := range 10 * maxTracked {
		key := fmt.Sprintf("key-%d", i)
		if i%2 == 0 {
			l.spend(key)
		} else if ok, _ := l.allow(key); !ok {
			t.Fatalf("a fresh key %s was refused", key)
		}
		if n := l.len(); n > maxTracked {
			t.Fatalf("after %d keys: %d buckets tracked, cap %d", i+1, n, maxTracked)
		}
		// begin never creates a bucket, so probing cannot grow memory.
		l.begin(fmt.Sprintf("probe-%d", i))
		now = now.Add(time.Millisecond)
	}
	if n := l.len(); n < maxTracked*9/10 {
		t.Errorf("%d buckets tracked: eviction threw away more than it needed to", n)
	}
}

// TestLimiterBeginTracksNothing: admitting a login or refresh must not
// create buckets, or probing alone would fill the table.
func TestLimiterBeginTracksNothing(t *testing.T) {
	l := newLimiters(5, 100, time.Now)
	for i := range 50 {
		if _, ok, _ := l.begin(fmt.Sprint(i)); !ok {
			t.Fatalf("an unseen key %d was refused", i)
		}
	}
	if n := l.len(); n != 0 {
		t.Errorf("begin created %d buckets", n)
	}
}

func TestLimitersOff(t *testing.T) {
	l := newLimiters(0, 10, time.Now)
	for i := range 100 {
		if ok, _ := l.allow("k"); !ok {
			t.Fatalf("a disabled limit refused request %d", i)
		}
		l.spend(fmt.Sprint(i))
	}
	if n := l.len(); n != 0 {
		t.Errorf("a disabled limit tracked %d buckets", n)
	}
}

func TestRetryAfterIsWholeSecondsAtLeastOne(t *testing.T) {
	s := &Server{log: slog.New(slog.DiscardHandler)}
	for wait, want := range map[time.Duration]string{
		0:                        "1",
		time.Nanosecond:          "1",
		500 * time.Millisecond:   "1",
		time.Second:              "1",
		1001 * time.Millisecond:  "2",
		59500 * time.Millisecond: "60",
	} {
		rec := httptest.NewRecorder()
		c, _ := gin.CreateTestContext(rec)
		c.Request = httptest.NewRequest("GET", "/", nil)
		s.rateLimited(c, wait, "api")
		if got := rec.Header().Get("Retry-After"); got != want || rec.Code != 429 {
			t.Errorf("wait %v: %d Retry-After %q, want 429 and %q", wait, rec.Code, got, want)
		}
	}
}

func TestClientKey(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.1":                 "192.0.2.1",
		"::ffff:192.0.2.1":          "192.0.2.1",
		"2001:db8:1:2::1":           "2001:db8:1:2::/64",
		"2001:DB8:1:2:ffff:ffff::9": "2001:db8:1:2::/64",
		"2001:db8:1:3::1":           "2001:db8:1:3::/64",
		"::1":                       "::/64",
		"":                          "",
		"not an address":            "not an address",
	} {
		if got := clientKey(addr); got != want {
			t.Errorf("clientKey(%q) = %q, want %q", addr, got, want)
		}
	}
}
