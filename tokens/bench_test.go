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
				if _, _, err := e.jwt.Sign(p.Principal, now); err != nil {
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

// BenchmarkRefresh rotates refresh tokens through the real SQLite store
// with synchronous=FULL, as production runs it: each rotation is a durable
// commit. In parallel, concurrent rotations of different families share
// commits.
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
}
