package server_test

import (
	"net/http"
	"testing"

	"keygate/keys"
)

// TestEmptyCompanyIDNamesNothing: an empty path segment where a company id
// belongs must not fall through to the partner's own keys (a partner JWT
// could otherwise mint and revoke partner API keys, which only operators
// may do).
func TestEmptyCompanyIDNamesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("Acme")
	partnerKeys := func() []keys.Key {
		t.Helper()
		ks, err := e.keys.ListKeys(t.Context(), keys.PartnerOwner(a.partner.ID))
		if err != nil {
			t.Fatal(err)
		}
		return ks
	}
	before := partnerKeys()

	for _, tc := range []struct{ method, path string }{
		{http.MethodPost, "/api/v1/companies//keys"},
		{http.MethodGet, "/api/v1/companies//keys"},
		{http.MethodDelete, "/api/v1/companies//keys/" + before[0].ID},
		{http.MethodGet, "/api/v1/companies/"},
		{http.MethodDelete, "/api/v1/companies/"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := e.do(request{method: tc.method, path: tc.path, token: a.pair.JWT})
			wantError(t, rec, http.StatusNotFound, "not_found")
		})
	}
	ks := partnerKeys()
	if len(ks) != len(before) {
		t.Errorf("partner has %d keys, had %d", len(ks), len(before))
	}
	for _, k := range ks {
		if k.RevokedAt != nil {
			t.Errorf("partner key %s was revoked", k.ID)
		}
	}
	wantStatus(t, loginFrom(e, a.apiKey, "", nil), http.StatusOK)
}
