package server_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"keygate/keys"
)

const companiesPath = "/api/v1/companies"

func companyPath(id string) string { return companiesPath + "/" + url.PathEscape(id) }

func keysPath(id string) string { return companyPath(id) + "/keys" }

func keyPath(id, keyID string) string { return keysPath(id) + "/" + url.PathEscape(keyID) }

func TestCreateCompany(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("Partner A")

	rec := e.post(companiesPath, `{"name":"Globex"}`, a.pair.JWT)
	wantStatus(t, rec, http.StatusCreated)
	wantMembers(t, rec.Body.Bytes(), "id", "name", "externalId", "partnerId", "createdAt", "status", "apiKey", "keyId", "scopes")
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store on a response holding a key", cc)
	}
	if !strings.Contains(rec.Body.String(), `"externalId":null`) {
		t.Errorf("externalId not null when unset: %s", rec.Body)
	}
	co := decodeInto[createdCompany](t, rec)
	if !strings.HasPrefix(co.ID, "com_") || co.Name != "Globex" || co.ExternalID != nil || co.PartnerID != a.partner.ID ||
		co.Status != keys.StatusActive || !strings.HasPrefix(co.APIKey, keys.CompanyKeyPrefix) || co.KeyID == "" {
		t.Errorf("created company = %+v", co)
	}
	if _, err := keys.ParseAPIKey(co.APIKey); err != nil {
		t.Errorf("company key %q does not parse: %v", co.APIKey, err)
	}
	if at := wantStamp(t, "createdAt", co.CreatedAt); !at.Equal(epoch) {
		t.Errorf("createdAt = %s, want %s", at, epoch)
	}

	withExt := e.createCompany(a.pair.JWT, `{"name":"Initech","externalId":"crm-42"}`)
	if withExt.ExternalID == nil || *withExt.ExternalID != "crm-42" {
		t.Errorf("externalId = %v, want crm-42", withExt.ExternalID)
	}

	rec = e.get(companyPath(co.ID), a.pair.JWT)
	wantStatus(t, rec, http.StatusOK)
	wantMembers(t, rec.Body.Bytes(), "id", "name", "externalId", "partnerId", "createdAt", "status")
	want := company{ID: co.ID, Name: co.Name, PartnerID: a.partner.ID, CreatedAt: co.CreatedAt, Status: keys.StatusActive}
	if got := decodeInto[company](t, rec); got != want {
		t.Errorf("get = %+v, want %+v", got, want)
	}
}

func TestCreateCompanyValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("Partner A")
	long := strings.Repeat("é", 201) // 201 characters, 402 bytes
	cases := []struct {
		name, body, field string
	}{
		{"name missing", `{}`, "name"},
		{"name missing, externalId given", `{"externalId":"x"}`, "name"},
		{"name empty", `{"name":""}`, "name"},
		{"name null", `{"name":null}`, "name"},
		{"name number", `{"name":7}`, "name"},
		{"name array", `{"name":["a"]}`, "name"},
		{"name too long", `{"name":"` + long + `"}`, "name"},
		{"externalId empty", `{"name":"a","externalId":""}`, "externalId"},
		{"externalId too long", `{"name":"a","externalId":"` + long + `"}`, "externalId"},
		{"externalId number", `{"name":"a","externalId":42}`, "externalId"},
		{"externalId object", `{"name":"a","externalId":{}}`, "externalId"},
		{"partnerId mass assignment", `{"name":"a","partnerId":"par_other"}`, "partnerId"},
		{"status mass assignment", `{"name":"a","status":"disabled"}`, "status"},
		{"id mass assignment", `{"name":"a","id":"com_mine"}`, "id"},
		{"apiKey mass assignment", `{"name":"a","apiKey":"ck_x"}`, "apiKey"},
		{"name in other case", `{"Name":"a"}`, "Name"},
		{"duplicate name", `{"name":"a","name":"b"}`, "name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg := wantError(t, e.post(companiesPath, tc.body, a.pair.JWT), http.StatusBadRequest, "validation_error")
			if !strings.HasPrefix(msg, tc.field+":") {
				t.Errorf("message %q does not name the field %s", msg, tc.field)
			}
		})
	}
	// None of the refused requests created anything.
	page := decodeInto[companyPage](t, e.get(companiesPath, a.pair.JWT))
	if len(page.Companies) != 0 {
		t.Fatalf("refused requests created companies: %+v", page.Companies)
	}
	// The limits are in characters: 200 two-byte characters are fine.
	e.createCompany(a.pair.JWT, `{"name":"`+long[2:]+`","externalId":"`+long[2:]+`"}`)
}

func TestCompanyEndpointsNeedPartnerToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("Partner A")
	co := e.createCompany(a.pair.JWT, `{"name":"Globex"}`)
	requests := []request{
		{method: http.MethodPost, path: companiesPath, body: `{"name":"x"}`},
		{method: http.MethodGet, path: companiesPath},
		{method: http.MethodGet, path: companyPath(co.ID)},
		{method: http.MethodDelete, path: companyPath(co.ID)},
		{method: http.MethodPost, path: keysPath(co.ID)},
		{method: http.MethodGet, path: keysPath(co.ID)},
		{method: http.MethodDelete, path: keyPath(co.ID, co.KeyID)},
	}
	for _, r := range requests {
		for name, token := range map[string]string{"no token": "", "bad token": "x.y.z", "refresh token": a.pair.RefreshToken, "API key": a.apiKey} {
			t.Run(r.method+" "+r.path+" "+name, func(t *testing.T) {
				r := r
				r.token = token
				wantError(t, e.do(r), http.StatusUnauthorized, "unauthorized")
			})
		}
	}
	got := decodeInto[company](t, e.get(companyPath(co.ID), a.pair.JWT))
	if got.Status != keys.StatusActive {
		t.Errorf("unauthenticated requests changed the company: %+v", got)
	}
}

func TestExternalIDUniquePerPartner(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b := e.tenant("Partner A"), e.tenant("Partner B")
	e.createCompany(a.pair.JWT, `{"name":"One","externalId":"cust-1"}`)
	wantError(t, e.post(companiesPath, `{"name":"Two","externalId":"cust-1"}`, a.pair.JWT), http.StatusConflict, "conflict")
	// Another partner's references are its own business.
	e.createCompany(b.pair.JWT, `{"name":"Other","externalId":"cust-1"}`)
	// Companies without an externalId never conflict.
	e.createCompany(a.pair.JWT, `{"name":"Three"}`)
	e.createCompany(a.pair.JWT, `{"name":"Four"}`)
	e.createCompany(a.pair.JWT, `{"name":"Five","externalId":"cust-2"}`)

	var names []string
	for _, c := range decodeInto[companyPage](t, e.get(companiesPath, a.pair.JWT)).Companies {
		names = append(names, c.Name)
	}
	if want := []string{"One", "Three", "Four", "Five"}; !slices.Equal(names, want) {
		t.Errorf("A's companies = %v, want %v", names, want)
	}
}

func TestCompanyLoginAndMe(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("Partner A")
	co := e.createCompany(a.pair.JWT, `{"name":"Globex","externalId":"g-1"}`)

	rec := e.post("/api/v1/auth/login", loginBody(co.APIKey), "")
	wantStatus(t, rec, http.StatusOK)
	wantMembers(t, rec.Body.Bytes(), "jwt", "expirationDate", "refreshToken", "refreshTokenExpiration")
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q", cc)
	}
	pair := decodeInto[tokenPair](t, rec)
	wantStamp(t, "expirationDate", pair.ExpirationDate)
	wantStamp(t, "refreshTokenExpiration", pair.RefreshTokenExpiration)
	c := claims(t, pair.JWT)
	for name, want := range map[string]any{
		"kind": "company", "sub": co.ID, "client_id": co.ID, "company_id": co.ID, "partner_id": a.partner.ID, "key_id": co.KeyID,
	} {
		if c[name] != want {
			t.Errorf("claim %s = %v, want %v", name, c[name], want)
		}
	}

	rec = e.get("/api/v1/auth/me", pair.JWT)
	wantStatus(t, rec, http.StatusOK)
	wantMembers(t, rec.Body.Bytes(), "type", "id", "name", "partnerId", "keyId", "scopes", "expirationDate")
	want := meBody{Type: "company", ID: co.ID, Name: "Globex", PartnerID: a.partner.ID, KeyID: co.KeyID, Scopes: []string{}, ExpirationDate: pair.ExpirationDate}
	if got := decodeInto[meBody](t, rec); !reflect.DeepEqual(got, want) {
		t.Errorf("me = %+v, want %+v", got, want)
	}

	// A company refreshes like a partner, keeping its claims.
	next := e.refresh(pair.RefreshToken)
	if nc := claims(t, next.JWT); nc["kind"] != "company" || nc["sub"] != co.ID || nc["partner_id"] != a.partner.ID || nc["jti"] == c["jti"] {
		t.Errorf("refreshed claims = %v", nc)
	}
}

// TestCompanyIsolation tries every company endpoint on partner A's company
// with partner B's token (404, exactly as for a company that does not exist)
// and with a company's token (403), and checks that nothing changed.
func TestCompanyIsolation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b := e.tenant("Partner A"), e.tenant("Partner B")
	target := e.createCompany(a.pair.JWT, `{"name":"A's customer","externalId":"a-1"}`)
	sibling := e.createCompany(a.pair.JWT, `{"name":"A's other customer"}`)
	bOwn := e.createCompany(b.pair.JWT, `{"name":"B's customer"}`)
	companyToken := e.login(target.APIKey).JWT
	bCompanyToken := e.login(bOwn.APIKey).JWT

	endpoints := func(id, keyID string) []request {
		return []request{
			{method: http.MethodGet, path: companyPath(id)},
			{method: http.MethodPost, path: keysPath(id)},
			{method: http.MethodGet, path: keysPath(id)},
			{method: http.MethodDelete, path: keyPath(id, keyID)},
			{method: http.MethodDelete, path: companyPath(id)},
		}
	}
	unknown := endpoints("com_doesnotexist000000000", "key_doesnotexist000000000")
	for i, r := range endpoints(target.ID, target.KeyID) {
		t.Run("partner B "+r.method+" "+r.path, func(t *testing.T) {
			r.token = b.pair.JWT
			rec := e.do(r)
			wantError(t, rec, http.StatusNotFound, "not_found")
			u := unknown[i]
			u.token = b.pair.JWT
			if ref := e.do(u); ref.Code != rec.Code || ref.Body.String() != rec.Body.String() {
				t.Errorf("another partner's company (%d %s) is distinguishable from an unknown one (%d %s)", rec.Code, rec.Body, ref.Code, ref.Body)
			}
		})
	}
	// Keys of A's company cannot be reached through B's or A's other companies.
	t.Run("key through partner B's company", func(t *testing.T) {
		wantError(t, e.delete(keyPath(bOwn.ID, target.KeyID), b.pair.JWT), http.StatusNotFound, "not_found")
	})
	t.Run("key through a sibling company", func(t *testing.T) {
		wantError(t, e.delete(keyPath(sibling.ID, target.KeyID), a.pair.JWT), http.StatusNotFound, "not_found")
	})
	t.Run("partner key through a company", func(t *testing.T) {
		wantError(t, e.delete(keyPath(target.ID, partnerKeyID(t, e, a.partner.ID)), a.pair.JWT), http.StatusNotFound, "not_found")
	})

	all := append(endpoints(target.ID, target.KeyID),
		request{method: http.MethodGet, path: companiesPath},
		request{method: http.MethodPost, path: companiesPath, body: `{"name":"sneaky"}`})
	for name, token := range map[string]string{"own company": companyToken, "other partner's company": bCompanyToken} {
		for _, r := range all {
			t.Run(name+" "+r.method+" "+r.path, func(t *testing.T) {
				r.token = token
				wantError(t, e.do(r), http.StatusForbidden, "forbidden")
			})
		}
	}

	t.Run("B lists only its own", func(t *testing.T) {
		page := decodeInto[companyPage](t, e.get(companiesPath, b.pair.JWT))
		if len(page.Companies) != 1 || page.Companies[0].ID != bOwn.ID {
			t.Errorf("B's listing = %+v", page.Companies)
		}
	})

	// Nothing B or the companies tried had any effect.
	got := decodeInto[company](t, e.get(companyPath(target.ID), a.pair.JWT))
	if got.Status != keys.StatusActive {
		t.Errorf("target company status = %q after the attempts", got.Status)
	}
	ks := decodeInto[keyList](t, e.get(keysPath(target.ID), a.pair.JWT)).Keys
	if len(ks) != 1 || ks[0].RevokedAt != nil {
		t.Errorf("target company keys = %+v after the attempts", ks)
	}
	e.login(target.APIKey)
	page := decodeInto[companyPage](t, e.get(companiesPath, a.pair.JWT))
	if len(page.Companies) != 2 {
		t.Errorf("A has %d companies, want 2: %+v", len(page.Companies), page.Companies)
	}
}

type companyPage struct {
	Companies  []company `json:"companies"`
	NextCursor *string   `json:"nextCursor"`
}

func TestCompanyPagination(t *testing.T) {
	t.Parallel()
	for _, limit := range []int{1, 2, 3} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			a, b := e.tenant("Partner A"), e.tenant("Partner B")
			var want []string
			create := func(n int) {
				for range n {
					want = append(want, e.createCompany(a.pair.JWT, fmt.Sprintf(`{"name":"company %d"}`, len(want))).ID)
					e.createCompany(b.pair.JWT, `{"name":"noise"}`)
				}
			}
			create(7)

			var got []string
			cursor := ""
			for pages := 0; ; pages++ {
				if pages > 20 {
					t.Fatal("pagination does not end")
				}
				q := url.Values{"limit": {fmt.Sprint(limit)}}
				if cursor != "" {
					q.Set("cursor", cursor)
				}
				rec := e.get(companiesPath+"?"+q.Encode(), a.pair.JWT)
				wantStatus(t, rec, http.StatusOK)
				wantMembers(t, rec.Body.Bytes(), "companies", "nextCursor")
				page := decodeInto[companyPage](t, rec)
				if len(page.Companies) == 0 || len(page.Companies) > limit {
					t.Fatalf("page of %d companies with limit %d", len(page.Companies), limit)
				}
				for _, c := range page.Companies {
					if c.PartnerID != a.partner.ID {
						t.Fatalf("A's listing holds %+v", c)
					}
					got = append(got, c.ID)
				}
				if strings.Contains(rec.Body.String(), "apiKey") || strings.Contains(rec.Body.String(), "ck_") {
					t.Fatalf("listing holds a key: %s", rec.Body)
				}
				if pages == 1 {
					create(2) // created while walking: they must show up at the end
				}
				if page.NextCursor == nil {
					if !strings.Contains(rec.Body.String(), `"nextCursor":null`) {
						t.Errorf("last page's nextCursor is not null: %s", rec.Body)
					}
					break
				}
				cursor = *page.NextCursor
			}
			if !slices.Equal(got, want) {
				t.Errorf("walked %v\nwant    %v (oldest first, none missing or repeated)", got, want)
			}
		})
	}

	t.Run("default and maximum limit", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		a := e.tenant("Partner A")
		for i := range 3 {
			e.createCompany(a.pair.JWT, fmt.Sprintf(`{"name":"c%d"}`, i))
		}
		for _, q := range []string{"", "?limit=200", "?limit=3", "?limit=50&cursor="} {
			page := decodeInto[companyPage](t, e.get(companiesPath+q, a.pair.JWT))
			if len(page.Companies) != 3 || page.NextCursor != nil {
				t.Errorf("%q: %d companies, next %v", q, len(page.Companies), page.NextCursor)
			}
		}
		empty := e.tenant("Partner Empty")
		rec := e.get(companiesPath, empty.pair.JWT)
		wantStatus(t, rec, http.StatusOK)
		if rec.Body.String() != `{"companies":[],"nextCursor":null}` {
			t.Errorf("empty listing = %s", rec.Body)
		}
	})
}

func TestCompanyPaginationBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("Partner A")
	for range 3 {
		e.createCompany(a.pair.JWT, `{"name":"c"}`)
	}
	page := decodeInto[companyPage](t, e.get(companiesPath+"?limit=1", a.pair.JWT))
	if page.NextCursor == nil {
		t.Fatal("no cursor to tamper with")
	}
	enc := base64.RawURLEncoding.EncodeToString
	cases := map[string]struct{ query, field string }{
		"limit 0":                {"limit=0", "limit"},
		"limit -1":               {"limit=-1", "limit"},
		"limit 201":              {"limit=201", "limit"},
		"limit abc":              {"limit=abc", "limit"},
		"limit 1.5":              {"limit=1.5", "limit"},
		"limit huge":             {"limit=99999999999999999999", "limit"},
		"cursor garbage":         {"cursor=not-a-cursor!", "cursor"},
		"cursor raw number":      {"cursor=5", "cursor"},
		"cursor zero":            {"cursor=" + enc([]byte("c1.0")), "cursor"},
		"cursor negative":        {"cursor=" + enc([]byte("c1.-5")), "cursor"},
		"cursor other version":   {"cursor=" + enc([]byte("c2.5")), "cursor"},
		"cursor not a number":    {"cursor=" + enc([]byte("c1.abc")), "cursor"},
		"cursor prefix only":     {"cursor=" + enc([]byte("c1.")), "cursor"},
		"cursor with padding":    {"cursor=" + url.QueryEscape(base64.URLEncoding.EncodeToString([]byte("c1.5"))), "cursor"},
		"cursor truncated":       {"cursor=" + (*page.NextCursor)[:len(*page.NextCursor)-1], "cursor"},
		"good cursor, bad limit": {"cursor=" + *page.NextCursor + "&limit=0", "limit"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			msg := wantError(t, e.get(companiesPath+"?"+tc.query, a.pair.JWT), http.StatusBadRequest, "validation_error")
			if !strings.HasPrefix(msg, tc.field+":") {
				t.Errorf("message %q does not name %s", msg, tc.field)
			}
		})
	}
}

type keyInfo struct {
	KeyID      string   `json:"keyId"`
	Hint       string   `json:"hint"`
	Name       *string  `json:"name"`
	Scopes     []string `json:"scopes"`
	CreatedAt  string   `json:"createdAt"`
	ExpiresAt  *string  `json:"expiresAt"`
	LastUsedAt *string  `json:"lastUsedAt"`
	RevokedAt  *string  `json:"revokedAt"`
}

type keyList struct {
	Keys []keyInfo `json:"keys"`
}

type newKeyBody struct {
	KeyID     string   `json:"keyId"`
	APIKey    string   `json:"apiKey"`
	CreatedAt string   `json:"createdAt"`
	Name      *string  `json:"name"`
	Scopes    []string `json:"scopes"`
	ExpiresAt *string  `json:"expiresAt"`
}

// TestCompanyKeyRotation is the companies issue's story: a second key
// through the partner, the old key revoked, its refresh tokens dead with it.
func TestCompanyKeyRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("Partner A")
	co := e.createCompany(a.pair.JWT, `{"name":"Globex"}`)

	rec := e.get(keysPath(co.ID), a.pair.JWT)
	wantStatus(t, rec, http.StatusOK)
	wantMembers(t, rec.Body.Bytes(), "keys")
	if !strings.Contains(rec.Body.String(), `"lastUsedAt":null`) || !strings.Contains(rec.Body.String(), `"revokedAt":null`) {
		t.Errorf("unset times are not null: %s", rec.Body)
	}
	ks := decodeInto[keyList](t, rec).Keys
	if len(ks) != 1 || ks[0].KeyID != co.KeyID || ks[0].Hint != co.APIKey[:7] || ks[0].LastUsedAt != nil || ks[0].RevokedAt != nil {
		t.Fatalf("keys = %+v", ks)
	}
	wantStamp(t, "createdAt", ks[0].CreatedAt)
	if strings.Contains(rec.Body.String(), co.APIKey) {
		t.Fatal("key listing holds the key")
	}

	e.clock.Advance(time.Minute)
	old := e.login(co.APIKey)
	oldRefreshed := e.refresh(old.RefreshToken) // a family two generations deep

	e.clock.Advance(time.Minute)
	rec = e.post(keysPath(co.ID), "", a.pair.JWT)
	wantStatus(t, rec, http.StatusCreated)
	wantMembers(t, rec.Body.Bytes(), "keyId", "apiKey", "createdAt", "name", "scopes", "expiresAt")
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q", cc)
	}
	second := decodeInto[newKeyBody](t, rec)
	if !strings.HasPrefix(second.APIKey, keys.CompanyKeyPrefix) || second.KeyID == co.KeyID {
		t.Fatalf("second key = %+v", second)
	}
	if at := wantStamp(t, "createdAt", second.CreatedAt); !at.Equal(epoch.Add(2 * time.Minute)) {
		t.Errorf("createdAt = %s", at)
	}
	// Both keys work during the rotation.
	e.login(co.APIKey)
	fresh := e.login(second.APIKey)
	if claims(t, fresh.JWT)["key_id"] != second.KeyID {
		t.Errorf("second key's token names key %v", claims(t, fresh.JWT)["key_id"])
	}

	ks = decodeInto[keyList](t, e.get(keysPath(co.ID), a.pair.JWT)).Keys
	if len(ks) != 2 {
		t.Fatalf("keys = %+v", ks)
	}
	for _, k := range ks {
		if k.LastUsedAt == nil {
			t.Fatalf("key %s has no lastUsedAt after logging in", k.KeyID)
		}
		if at := wantStamp(t, "lastUsedAt", *k.LastUsedAt); !at.Equal(epoch.Add(2 * time.Minute)) {
			t.Errorf("lastUsedAt of %s = %s", k.KeyID, at)
		}
	}

	e.clock.Advance(time.Minute)
	wantStatus(t, e.delete(keyPath(co.ID, co.KeyID), a.pair.JWT), http.StatusNoContent)
	wantStatus(t, e.delete(keyPath(co.ID, co.KeyID), a.pair.JWT), http.StatusNoContent) // repeating is fine
	wantError(t, e.delete(keyPath(co.ID, "key_unknown"), a.pair.JWT), http.StatusNotFound, "not_found")

	wantError(t, e.post("/api/v1/auth/login", loginBody(co.APIKey), ""), http.StatusUnauthorized, "unauthorized")
	wantError(t, e.post("/api/v1/auth/refresh", refreshBody(oldRefreshed.RefreshToken), ""), http.StatusUnauthorized, "unauthorized")
	wantError(t, e.get("/api/v1/auth/me", oldRefreshed.JWT), http.StatusUnauthorized, "unauthorized")
	// The new key and its session are untouched.
	wantStatus(t, e.get("/api/v1/auth/me", fresh.JWT), http.StatusOK)
	e.refresh(fresh.RefreshToken)
	e.login(second.APIKey)

	for _, k := range decodeInto[keyList](t, e.get(keysPath(co.ID), a.pair.JWT)).Keys {
		switch {
		case k.KeyID == co.KeyID && (k.RevokedAt == nil || !wantStamp(t, "revokedAt", *k.RevokedAt).Equal(epoch.Add(3*time.Minute))):
			t.Errorf("revoked key %+v", k)
		case k.KeyID == second.KeyID && k.RevokedAt != nil:
			t.Errorf("second key revoked: %+v", k)
		}
	}
}

func TestDisableCompany(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("Partner A")
	co := e.createCompany(a.pair.JWT, `{"name":"Globex"}`)
	other := e.createCompany(a.pair.JWT, `{"name":"Initech"}`)
	session := e.login(co.APIKey)
	otherSession := e.login(other.APIKey)

	wantStatus(t, e.delete(companyPath(co.ID), a.pair.JWT), http.StatusNoContent)
	wantStatus(t, e.delete(companyPath(co.ID), a.pair.JWT), http.StatusNoContent)
	wantError(t, e.delete(companyPath("com_unknown"), a.pair.JWT), http.StatusNotFound, "not_found")

	if got := decodeInto[company](t, e.get(companyPath(co.ID), a.pair.JWT)); got.Status != keys.StatusDisabled {
		t.Errorf("status = %q, want disabled", got.Status)
	}
	wantError(t, e.post("/api/v1/auth/login", loginBody(co.APIKey), ""), http.StatusUnauthorized, "unauthorized")
	wantError(t, e.post("/api/v1/auth/refresh", refreshBody(session.RefreshToken), ""), http.StatusUnauthorized, "unauthorized")
	wantError(t, e.get("/api/v1/auth/me", session.JWT), http.StatusUnauthorized, "unauthorized")
	// No new keys for a disabled company.
	wantError(t, e.post(keysPath(co.ID), "", a.pair.JWT), http.StatusConflict, "conflict")
	// The partner's other company is unaffected.
	e.login(other.APIKey)
	e.refresh(otherSession.RefreshToken)

	page := decodeInto[companyPage](t, e.get(companiesPath, a.pair.JWT))
	if len(page.Companies) != 2 || page.Companies[0].Status != keys.StatusDisabled || page.Companies[1].Status != keys.StatusActive {
		t.Errorf("listing = %+v", page.Companies)
	}
}

func TestDisabledPartnerCompanies(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("Partner A")
	b := e.tenant("Partner B")
	co := e.createCompany(a.pair.JWT, `{"name":"Globex"}`)
	bCo := e.createCompany(b.pair.JWT, `{"name":"Initech"}`)
	session := e.login(co.APIKey)
	bSession := e.login(bCo.APIKey)

	if err := e.keys.DisablePartner(context.Background(), keys.Operator, a.partner.ID); err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]request{
		"partner login":   {method: http.MethodPost, path: "/api/v1/auth/login", body: loginBody(a.apiKey)},
		"partner refresh": {method: http.MethodPost, path: "/api/v1/auth/refresh", body: refreshBody(a.pair.RefreshToken)},
		"partner token":   {method: http.MethodGet, path: companiesPath, token: a.pair.JWT},
		"company login":   {method: http.MethodPost, path: "/api/v1/auth/login", body: loginBody(co.APIKey)},
		"company refresh": {method: http.MethodPost, path: "/api/v1/auth/refresh", body: refreshBody(session.RefreshToken)},
		"company token":   {method: http.MethodGet, path: "/api/v1/auth/me", token: session.JWT},
	} {
		t.Run(name, func(t *testing.T) {
			wantError(t, e.do(r), http.StatusUnauthorized, "unauthorized")
		})
	}
	// Partner B and its company carry on.
	e.login(b.apiKey)
	e.refresh(bSession.RefreshToken)
	wantStatus(t, e.get(companiesPath, b.pair.JWT), http.StatusOK)
}

// TestCompanyAuditTrail walks the companies issue's story and checks that
// the audit trail shows each step, with hints and ids but never a key.
func TestCompanyAuditTrail(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("Partner A")
	co := e.createCompany(a.pair.JWT, `{"name":"Globex"}`)
	first := e.login(co.APIKey)
	second := decodeInto[newKeyBody](t, e.post(keysPath(co.ID), "", a.pair.JWT))
	e.login(second.APIKey)
	wantStatus(t, e.delete(keyPath(co.ID, co.KeyID), a.pair.JWT), http.StatusNoContent)
	wantStatus(t, e.post("/api/v1/auth/login", loginBody(co.APIKey), ""), http.StatusUnauthorized)
	wantStatus(t, e.post("/api/v1/auth/refresh", refreshBody(first.RefreshToken), ""), http.StatusUnauthorized)
	wantStatus(t, e.delete(companyPath(co.ID), a.pair.JWT), http.StatusNoContent)

	p, partnerKey := a.partner, partnerKeyID(t, e, a.partner.ID)
	addr := "192.0.2.10"
	type step struct{ action, actorType, actorID, target, addr, outcome string }
	want := []step{
		{"partner.created", "operator", "operator", p.ID, "local", keys.OutcomeSuccess},
		{"key.created", "operator", "operator", partnerKey, "local", keys.OutcomeSuccess},
		{"login", "partner", p.ID, partnerKey, addr, keys.OutcomeSuccess},
		{"company.created", "partner", p.ID, co.ID, addr, keys.OutcomeSuccess},
		{"key.created", "partner", p.ID, co.KeyID, addr, keys.OutcomeSuccess},
		{"login", "company", co.ID, co.KeyID, addr, keys.OutcomeSuccess},
		{"key.created", "partner", p.ID, second.KeyID, addr, keys.OutcomeSuccess},
		{"login", "company", co.ID, second.KeyID, addr, keys.OutcomeSuccess},
		{"key.revoked", "partner", p.ID, co.KeyID, addr, keys.OutcomeSuccess},
		{"login", "anonymous", "", co.APIKey[:7], addr, keys.OutcomeFailure},
		{"refresh", "anonymous", "", "", addr, keys.OutcomeFailure},
		{"company.disabled", "partner", p.ID, co.ID, addr, keys.OutcomeSuccess},
	}
	var got []step
	for _, ev := range e.audit() {
		got = append(got, step{ev.Action, string(ev.ActorType), ev.ActorID, ev.Target, ev.Addr, ev.Outcome})
		for _, secret := range []string{a.apiKey, co.APIKey, second.APIKey, first.RefreshToken, first.JWT} {
			if strings.Contains(fmt.Sprintf("%+v", ev), secret) {
				t.Errorf("audit event %+v holds a secret", ev)
			}
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("audit trail:\n%v\nwant\n%v", got, want)
	}
}
