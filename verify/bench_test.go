package verify_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"keygate/verify/accesstoken/accesstokentest"
)

// benchPair returns, for a keygate token of alg, a bare golang-jwt parse of
// it with the key in hand, and Verifier.Verify of it with its key cached.
func benchPair(b *testing.B, alg string) (bare, verify func() error) {
	b.Helper()
	clk := &clock{now: t0}
	k := startKeygate(b, alg, clk)
	v := newVerifier(b, k, nil)
	tok := k.sign(b, k.partner)
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(k.gw.Keyring.JWKS(), &set); err != nil {
		b.Fatal(err)
	}
	pub := accesstokentest.PublicKey(b, set.Keys[0])
	parser := jwt.NewParser(jwt.WithValidMethods([]string{alg}), jwt.WithTimeFunc(clk.Now))
	keyFunc := func(*jwt.Token) (any, error) { return pub, nil }
	ctx := context.Background()
	bare = func() error {
		_, err := parser.ParseWithClaims(tok, &jwt.RegisteredClaims{}, keyFunc)
		return err
	}
	verify = func() error {
		_, err := v.Verify(ctx, tok)
		return err
	}
	return bare, verify
}

// BenchmarkVerify pairs, for each algorithm, a bare golang-jwt parse of a
// keygate token with the key in hand ("bare") and Verifier.Verify of the
// same token ("verify"): what the verifier's checks cost on top of the
// signature.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range asymmetric {
		bare, verify := benchPair(b, alg)
		for _, run := range []struct {
			name string
			f    func() error
		}{{"bare", bare}, {"verify", verify}} {
			f := run.f
			b.Run(alg+"/"+run.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := f(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkVerifyOverBare runs the pair of BenchmarkVerify interleaved, op
// by op, and reports the ratio of their times ("verify/bare"): on a busy
// machine a steadier figure than two runs one after the other.
func BenchmarkVerifyOverBare(b *testing.B) {
	for _, alg := range asymmetric {
		bare, verify := benchPair(b, alg)
		b.Run(alg, func(b *testing.B) {
			var inBare, inVerify time.Duration
			i := 0
			for b.Loop() {
				first, second, inFirst, inSecond := bare, verify, &inBare, &inVerify
				if i++; i%2 == 0 {
					first, second, inFirst, inSecond = verify, bare, &inVerify, &inBare
				}
				start := time.Now()
				err1 := first()
				mid := time.Now()
				err2 := second()
				*inFirst += mid.Sub(start)
				*inSecond += time.Since(mid)
				if err1 != nil || err2 != nil {
					b.Fatal(err1, err2)
				}
			}
			b.ReportMetric(float64(inVerify)/float64(inBare), "verify/bare")
			b.ReportMetric(float64(inBare.Nanoseconds())/float64(b.N), "bare-ns/op")
			b.ReportMetric(float64(inVerify.Nanoseconds())/float64(b.N), "verify-ns/op")
		})
	}
}
