package api_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"keygate/api"
)

// FuzzAppendJSON: the hand-written encoders write exactly what
// encoding/json writes for the same value.
func FuzzAppendJSON(f *testing.F) {
	f.Add("eyJ.x.y", "rt_abc", "partner", "par_1", "Acme <&> \"Inc\"", "", "key_1", int64(1782460602199))
	f.Add("", "", "company", "com_1", "\xff\u2028é", "par_1", "key_2", int64(0))
	f.Fuzz(func(t *testing.T, jwt, rt, kind, id, name, partnerID, keyID string, ms int64) {
		at := api.NewTime(time.UnixMilli(ms % 253402300799000))
		check := func(v any, got []byte) {
			t.Helper()
			want, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("AppendJSON = %s, encoding/json writes %s", got, want)
			}
		}
		tr := api.TokenResponse{JWT: jwt, ExpirationDate: at, RefreshToken: rt, RefreshTokenExpiration: at}
		check(tr, tr.AppendJSON(nil))
		me := api.Me{Type: kind, ID: id, Name: name, PartnerID: partnerID, KeyID: keyID, ExpirationDate: at}
		check(me, me.AppendJSON(nil))
		for _, scopes := range [][]string{{}, {name}, {keyID, rt, "orders:read"}} {
			me.Scopes = scopes
			check(me, me.AppendJSON(nil))
		}
	})
}

func TestTimeRoundTrip(t *testing.T) {
	at := api.NewTime(time.Date(2026, 6, 26, 7, 56, 42, 199_654_321, time.FixedZone("CEST", 7200)))
	b, err := json.Marshal(at)
	if err != nil || string(b) != `"2026-06-26T05:56:42.199+00:00"` {
		t.Fatalf("Marshal = %s, %v", b, err)
	}
	var back api.Time
	if err := json.Unmarshal(b, &back); err != nil || !back.Equal(at.Truncate(time.Millisecond)) {
		t.Fatalf("Unmarshal = %v, %v", back, err)
	}
	for _, bad := range []string{`"2026-06-26T05:56:42Z"`, `1782460602`, `null`, `"yesterday"`} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("Unmarshal(%s) accepted", bad)
		}
	}
}
