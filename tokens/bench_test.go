package tokens_test

import (
	"context"
	"testing"

	"keygate/tokens"
)

func BenchmarkSign(b *testing.B) {
	for _, alg := range tokens.Algorithms {
		b.Run(alg, func(b *testing.B) {
			e := newEnv(b, withAlg(alg))
			p := e.newPartner(b, "Acme")
			now := e.clock.Now()
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := e.jwt.Sign(p.Principal, "", now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, alg := range tokens.Algorithms {
		b.Run(alg, func(b *testing.B) {
			e := newEnv(b, withAlg(alg))
			tok := e.sign(b, e.newPartner(b, "Acme").Principal)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.jwt.Verify(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLogin logs in end to end through the real SQLite store with
// synchronous=FULL: the key from the keys cache, a signed access token and
// a self-contained refresh token. A login takes no writer (its audit event
// waits for the recorder's batch, which no job flushes here), which the
// writer-calls/op metric shows and the benchmark checks.
func BenchmarkLogin(b *testing.B) {
	full := func(c *envConfig) { c.synchronous = "FULL" }
	run := func(b *testing.B, parallel bool) {
		spy := &spyStore{}
		e := newEnv(b, full, withSpy(spy))
		p := e.newPartner(b, "Acme")
		e.login(b, p) // fills the keys cache
		e.gw.Recorder.Flush(context.Background())
		before := spy.writerCalls()
		ctx := context.Background()
		b.ReportAllocs()
		if parallel {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := e.svc.Login(ctx, p.apiKey, testAddr); err != nil {
						b.Error(err)
						return
					}
				}
			})
		} else {
			for b.Loop() {
				if _, err := e.svc.Login(ctx, p.apiKey, testAddr); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.StopTimer()
		calls := 0
		for m, n := range spy.writerCalls() {
			calls += n - before[m]
		}
		b.ReportMetric(float64(calls)/float64(b.N), "writer-calls/op")
		if calls != 0 {
			b.Fatalf("%d logins took the writer %d times", b.N, calls)
		}
	}
	b.Run("serial", func(b *testing.B) { run(b, false) })
	b.Run("parallel", func(b *testing.B) { run(b, true) })
}

// BenchmarkRefresh rotates refresh tokens through the real SQLite store
// with synchronous=FULL, as production runs it: each rotation is a durable
// commit. In parallel, concurrent rotations of different families share
// commits. "first" is a login and its first refresh, which inserts the
// family's row.
func BenchmarkRefresh(b *testing.B) {
	full := func(c *envConfig) { c.synchronous = "FULL" }
	b.Run("serial", func(b *testing.B) {
		e := newEnv(b, full)
		tok := e.login(b, e.newPartner(b, "Acme")).RefreshToken.Reveal()
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			pair, err := e.svc.Refresh(ctx, tok, testAddr)
			if err != nil {
				b.Fatal(err)
			}
			tok = pair.RefreshToken.Reveal()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		e := newEnv(b, full)
		p := e.newPartner(b, "Acme")
		ctx := context.Background()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			pair, err := e.svc.Login(ctx, p.apiKey, testAddr)
			if err != nil {
				b.Error(err)
				return
			}
			tok := pair.RefreshToken.Reveal()
			for pb.Next() {
				pair, err := e.svc.Refresh(ctx, tok, testAddr)
				if err != nil {
					b.Error(err)
					return
				}
				tok = pair.RefreshToken.Reveal()
			}
		})
	})
	b.Run("first", func(b *testing.B) {
		e := newEnv(b, full)
		p := e.newPartner(b, "Acme")
		ctx := context.Background()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				pair, err := e.svc.Login(ctx, p.apiKey, testAddr)
				if err == nil {
					_, err = e.svc.Refresh(ctx, pair.RefreshToken.Reveal(), testAddr)
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
