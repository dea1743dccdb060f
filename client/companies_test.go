package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"keygate/api"
	"keygate/client"
)

func TestPartnerAPI(t *testing.T) {
	k := startKeygate(t)
	c := newClient(t, k, client.Config{})
	ctx := context.Background()

	co, err := c.CreateCompany(ctx, "Globex", "crm-42")
	if err != nil {
		t.Fatalf("CreateCompany: %v", err)
	}
	if co.Name != "Globex" || co.ExternalID == nil || *co.ExternalID != "crm-42" || co.PartnerID != k.partner.ID ||
		co.Status != api.StatusActive || co.APIKey == "" || co.KeyID == "" {
		t.Fatalf("CreateCompany = %+v", co)
	}
	noExt, err := c.CreateCompany(ctx, "Initech", "")
	if err != nil || noExt.ExternalID != nil {
		t.Fatalf("CreateCompany without externalId = %+v, %v", noExt, err)
	}
	_, err = c.CreateCompany(ctx, "Globex again", "crm-42")
	wantAPIError(t, "duplicate externalId", err, http.StatusConflict, api.CodeConflict)
	_, err = c.CreateCompany(ctx, "", "")
	wantAPIError(t, "empty name", err, http.StatusBadRequest, api.CodeValidation)

	got, err := c.GetCompany(ctx, co.ID)
	if err != nil || jsonOf(t, got) != jsonOf(t, co.Company) {
		t.Fatalf("GetCompany = %+v, %v; want %+v", got, err, co.Company)
	}
	_, err = c.GetCompany(ctx, "com_doesnotexist")
	wantAPIError(t, "unknown company", err, http.StatusNotFound, api.CodeNotFound)
	_, err = c.GetCompany(ctx, "../auth/me")
	wantAPIError(t, "an id with a path in it", err, http.StatusNotFound, api.CodeNotFound)

	// The company's key logs in with a client of its own.
	cc := newClient(t, k, client.Config{APIKey: co.APIKey})
	mustToken(t, cc)
	n := 0
	for _, err := range cc.ListCompanies(ctx) {
		n++
		wantAPIError(t, "a company listing companies", err, http.StatusForbidden, api.CodeForbidden)
	}
	if n != 1 {
		t.Errorf("a company listing companies: %d results, want the one error", n)
	}

	key, err := c.CreateCompanyKey(ctx, co.ID)
	if err != nil || key.APIKey == "" || key.KeyID == "" {
		t.Fatalf("CreateCompanyKey = %+v, %v", key, err)
	}
	ks, err := c.ListCompanyKeys(ctx, co.ID)
	if err != nil || len(ks) != 2 || ks[0].KeyID != co.KeyID || ks[1].KeyID != key.KeyID || ks[0].RevokedAt != nil {
		t.Fatalf("ListCompanyKeys = %+v, %v", ks, err)
	}
	if err := c.RevokeCompanyKey(ctx, co.ID, co.KeyID); err != nil {
		t.Fatalf("RevokeCompanyKey: %v", err)
	}
	if err := c.RevokeCompanyKey(ctx, co.ID, co.KeyID); err != nil {
		t.Fatalf("RevokeCompanyKey again: %v", err)
	}
	_, err = newClient(t, k, client.Config{APIKey: co.APIKey}).Token(ctx)
	wantAPIError(t, "a revoked key logging in", err, http.StatusUnauthorized, api.CodeUnauthorized)
	mustToken(t, newClient(t, k, client.Config{APIKey: key.APIKey}))

	if err := c.DisableCompany(ctx, co.ID); err != nil {
		t.Fatalf("DisableCompany: %v", err)
	}
	if got, err := c.GetCompany(ctx, co.ID); err != nil || got.Status != api.StatusDisabled {
		t.Fatalf("after DisableCompany: %+v, %v", got, err)
	}
	_, err = c.CreateCompanyKey(ctx, co.ID)
	wantAPIError(t, "a key for a disabled company", err, http.StatusConflict, api.CodeConflict)
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func wantAPIError(t *testing.T, what string, err error, status int, code string) {
	t.Helper()
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != status || ae.Code != code || ae.Message == "" {
		t.Errorf("%s: %v, want %d %s", what, err, status, code)
	}
}

// TestListCompaniesEveryPage: the sequence goes over every page, in order,
// and stops fetching when the loop stops.
func TestListCompaniesEveryPage(t *testing.T) {
	k := startKeygate(t)
	c := newClient(t, k, client.Config{})
	client.SetPageSize(c, 2)
	ctx := context.Background()
	var want []string
	for i := range 5 {
		co, err := c.CreateCompany(ctx, fmt.Sprintf("Company %d", i), "")
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, co.ID)
	}
	var got []string
	for co, err := range c.ListCompanies(ctx) {
		if err != nil {
			t.Fatalf("ListCompanies: %v", err)
		}
		got = append(got, co.ID)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ListCompanies = %v, want %v", got, want)
	}
	if n := k.count("/api/v1/companies"); n != 5+3 {
		t.Errorf("%d requests to /api/v1/companies, want 5 creations and 3 pages", n)
	}

	before := k.count("/api/v1/companies")
	for range c.ListCompanies(ctx) {
		break
	}
	if n := k.count("/api/v1/companies") - before; n != 1 {
		t.Errorf("a loop stopped at the first company fetched %d pages", n)
	}
}
