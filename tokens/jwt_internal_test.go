package tokens

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"keygate/keys"
)

// TestAppendClaimsIsEncodingJSON: Sign writes the claims by hand; they must
// be exactly what encoding/json writes for Claims, which Verify reads.
func TestAppendClaimsIsEncodingJSON(t *testing.T) {
	for _, cfg := range []JWTConfig{
		{Issuer: "keygate", Audience: "r-auth", Algorithm: ES256},
		{Issuer: "https://auth.example.com/<&>", Audience: "aud \"quoted\" é", Algorithm: ES256},
	} {
		j, err := NewJWT(cfg, nil, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		scoped := keys.PrincipalOf("key_3", keys.CompanyOwner("par_1", "com_3"), "")
		scoped.Scopes = keys.StoredScopes("orders:read orders:write")
		for i, p := range []keys.Principal{
			keys.PrincipalOf("key_1", keys.PartnerOwner("par_1"), ""),
			keys.PrincipalOf("key_2", keys.CompanyOwner("par_1", "com_2"), ""),
			scoped,
			scoped,
		} {
			sid := ""
			if i == 3 {
				sid = "019f02ee5690c2c0d3f17857cffe21b1"
			}
			iat, exp := int64(1782460602), int64(1782461502)
			got := j.appendClaims(nil, p, sid, iat, exp, "jti-1")
			want, err := json.Marshal(&Claims{
				RegisteredClaims: jwt.RegisteredClaims{
					Issuer: cfg.Issuer, Subject: p.ID, Audience: jwt.ClaimStrings{cfg.Audience},
					ExpiresAt: jwt.NewNumericDate(time.Unix(exp, 0)), NotBefore: jwt.NewNumericDate(time.Unix(iat, 0)),
					IssuedAt: jwt.NewNumericDate(time.Unix(iat, 0)), ID: "jti-1",
				},
				ClientID: p.ID, Kind: string(p.Kind), PartnerID: p.PartnerID, CompanyID: p.CompanyID, KeyID: p.KeyID,
				Scope: p.Scopes.String(), SessionID: sid,
			})
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("appendClaims =\n%s\nencoding/json writes\n%s", got, want)
			}
		}
	}
}
