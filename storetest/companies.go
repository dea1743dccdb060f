package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"keygate/keys"
	"keygate/store"
)

// A partner's companies: creating them with their first key, reading,
// paging and disabling them, each only within its own partner.

func testCreateCompany(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := createPartner(t, s, "Acme", t0)
	b := createPartner(t, s, "Bolt", t0)

	ext := "crm-42"
	c := createCompany(t, s, a.ID, "Widgets Ltd", &ext, t0.Add(time.Second))
	wantEvent(t, s, "company.created", c.ID)
	wantEvent(t, s, "key.created", c.key.ID)
	ext = "changed by the caller afterwards"
	got, err := s.GetCompany(ctx, a.ID, c.ID)
	must(t, "GetCompany", err)
	checkCompany(t, got, keys.Company{ID: c.ID, PartnerID: a.ID, Name: "Widgets Ltd", ExternalID: ptr("crm-42"), Status: keys.StatusActive, CreatedAt: t0.Add(time.Second)})
	wantActive(t, s, c.digest, c.principal())
	checkKey(t, findKey(t, s, c.owner(), c.key.ID), c.key)

	dup := companyInput(a.ID, "Widgets again", ptr("crm-42"), t0)
	wantErr(t, "CreateCompany with the partner's existing externalId", dup.create(ctx, s), keys.ErrConflict)
	if _, err := s.GetCompany(ctx, a.ID, dup.ID); !errors.Is(err, keys.ErrNotFound) {
		t.Errorf("refused company: GetCompany err = %v, want ErrNotFound", err)
	}
	wantNoKey(t, s, "refused company's key", dup.digest)
	if hasEvent(t, s, "company.created", dup.ID) {
		t.Errorf("refused company left its audit event behind")
	}

	reuse := createCompany(t, s, b.ID, "Widgets at Bolt", ptr("crm-42"), t0)
	if got, err := s.GetCompany(ctx, b.ID, reuse.ID); err != nil || showString(got.ExternalID) != `"crm-42"` {
		t.Errorf("another partner's company with the same externalId: %+v, %v", got, err)
	}

	n1 := createCompany(t, s, a.ID, "No reference", nil, t0)
	n2 := createCompany(t, s, a.ID, "No reference either", nil, t0)
	for _, id := range []string{n1.ID, n2.ID} {
		got, err := s.GetCompany(ctx, a.ID, id)
		must(t, "GetCompany", err)
		if got.ExternalID != nil {
			t.Errorf("company without externalId reads back %s", showString(got.ExternalID))
		}
	}

	// A refused owner creates nothing.
	gone := createPartner(t, s, "Gone", t0)
	must(t, "DisablePartner", s.DisablePartner(ctx, gone.ID, t0, event(t0, "partner.disabled", "partner", gone.ID)))
	for _, tc := range []struct {
		name      string
		partnerID string
		want      error
	}{
		{"unknown partner", "par_unknown", keys.ErrNotFound},
		{"disabled partner", gone.ID, keys.ErrDisabled},
	} {
		c := companyInput(tc.partnerID, "Orphan", nil, t0)
		wantErr(t, "CreateCompany("+tc.name+")", c.create(ctx, s), tc.want)
		wantNoKey(t, s, tc.name+": refused company's key", c.digest)
	}
}

// Concurrent creates with one externalId: exactly one wins, however the
// store batches or serialises them.
func testCreateCompanyConcurrentExternalID(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := createPartner(t, s, "Acme", t0)
	const n = 20
	start := make(chan struct{})
	errs := make([]error, n)
	inputs := make([]company, n)
	var wg sync.WaitGroup
	for i := range n {
		ext := "shared"
		if i%2 == 1 {
			ext = fmt.Sprintf("own-%d", i)
		}
		inputs[i] = companyInput(a.ID, fmt.Sprintf("Company %d", i), &ext, t0)
		wg.Go(func() {
			<-start
			errs[i] = inputs[i].create(ctx, s)
		})
	}
	close(start)
	wg.Wait()

	won := 0
	for i, err := range errs {
		switch {
		case i%2 == 1 && err != nil:
			t.Errorf("company %d with its own externalId: %v", i, err)
		case i%2 == 0 && err == nil:
			won++
		case i%2 == 0 && !errors.Is(err, keys.ErrConflict):
			t.Errorf("company %d with the shared externalId: err = %v, want nil or ErrConflict", i, err)
		}
		_, gerr := s.GetCompany(ctx, a.ID, inputs[i].ID)
		if (err == nil) != (gerr == nil) {
			t.Errorf("company %d: create err = %v but GetCompany err = %v", i, err, gerr)
		}
	}
	if won != 1 {
		t.Errorf("%d creates with the same externalId succeeded, want exactly 1", won)
	}
}

func testGetCompany(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := newWorld(t, s, "Acme")
	b := newWorld(t, s, "Bolt")

	got, err := s.GetCompany(ctx, a.p.ID, a.c.ID)
	must(t, "GetCompany", err)
	checkCompany(t, got, a.c.Company)

	for _, tc := range []struct{ name, partnerID, id string }{
		{"another partner's company", a.p.ID, b.c.ID},
		{"own company under another partner", b.p.ID, a.c.ID},
		{"unknown company", a.p.ID, "com_unknown"},
		{"unknown partner", "par_unknown", a.c.ID},
	} {
		_, err := s.GetCompany(ctx, tc.partnerID, tc.id)
		wantErr(t, "GetCompany("+tc.name+")", err, keys.ErrNotFound)
	}
}

func testListCompanies(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := createPartner(t, s, "Acme", t0)
	b := createPartner(t, s, "Bolt", t0)

	page, err := s.ListCompanies(ctx, a.ID, keys.Page{Limit: 3})
	must(t, "ListCompanies with no companies", err)
	if len(page.Companies) != 0 || page.More {
		t.Errorf("no companies: got %d, More %v", len(page.Companies), page.More)
	}

	var want []keys.Company
	for i := range 7 {
		// Equal creation times on purpose: the order is the order of creation.
		c := createCompany(t, s, a.ID, fmt.Sprintf("Acme %d", i), nil, t0)
		want = append(want, c.Company)
		createCompany(t, s, b.ID, fmt.Sprintf("Bolt %d", i), nil, t0)
	}

	var got []keys.Company
	after := int64(0)
	for i, wantLen := range []int{3, 3, 1} {
		page, err := s.ListCompanies(ctx, a.ID, keys.Page{After: after, Limit: 3})
		must(t, "ListCompanies", err)
		if len(page.Companies) != wantLen || page.More != (i < 2) {
			t.Fatalf("page %d: %d companies, More %v; want %d, %v", i, len(page.Companies), page.More, wantLen, i < 2)
		}
		if page.Last <= after {
			t.Fatalf("page %d: Last %d does not move past After %d", i, page.Last, after)
		}
		got = append(got, page.Companies...)
		after = page.Last
	}
	if len(got) != len(want) {
		t.Fatalf("walk returned %d companies, want %d", len(got), len(want))
	}
	for i := range want {
		checkCompany(t, got[i], want[i])
	}

	page, err = s.ListCompanies(ctx, a.ID, keys.Page{After: after, Limit: 3})
	must(t, "ListCompanies past the end", err)
	if len(page.Companies) != 0 || page.More {
		t.Errorf("past the end: %d companies, More %v", len(page.Companies), page.More)
	}

	page, err = s.ListCompanies(ctx, a.ID, keys.Page{Limit: 7})
	must(t, "ListCompanies with Limit = count", err)
	if len(page.Companies) != 7 || page.More {
		t.Errorf("Limit = count: %d companies, More %v; want 7, false", len(page.Companies), page.More)
	}
	page, err = s.ListCompanies(ctx, a.ID, keys.Page{Limit: 200})
	must(t, "ListCompanies with a large Limit", err)
	if len(page.Companies) != 7 || page.More {
		t.Errorf("Limit > count: %d companies, More %v; want 7, false", len(page.Companies), page.More)
	}

	page, err = s.ListCompanies(ctx, "par_unknown", keys.Page{Limit: 3})
	must(t, "ListCompanies of an unknown partner", err)
	if len(page.Companies) != 0 {
		t.Errorf("unknown partner lists %d companies", len(page.Companies))
	}
}

// Companies created while a client walks the pages appear at the end: none
// is skipped, none repeated.
func testListCompaniesWhileAdding(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := createPartner(t, s, "Acme", t0)
	b := createPartner(t, s, "Bolt", t0)
	var want []string
	add := func(i int) {
		t.Helper()
		want = append(want, createCompany(t, s, a.ID, fmt.Sprintf("Acme %d", i), nil, t0.Add(time.Duration(i)*time.Second)).ID)
		createCompany(t, s, b.ID, fmt.Sprintf("Bolt %d", i), nil, t0)
	}
	for i := range 5 {
		add(i)
	}
	var got []string
	after, added := int64(0), 5
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatal("the walk does not end")
		}
		page, err := s.ListCompanies(ctx, a.ID, keys.Page{After: after, Limit: 2})
		must(t, "ListCompanies", err)
		for _, c := range page.Companies {
			got = append(got, c.ID)
		}
		if !page.More {
			break
		}
		after = page.Last
		if added < 10 {
			add(added)
			added++
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("walk while adding:\n got %v\nwant %v", got, want)
	}
}

func testDisableCompany(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := newWorld(t, s, "Acme")
	b := newWorld(t, s, "Bolt")
	at := t0.Add(time.Hour)

	must(t, "DisableCompany", s.DisableCompany(ctx, a.p.ID, a.c.ID, at, event(at, "company.disabled", "company", a.c.ID)))
	wantEvent(t, s, "company.disabled", a.c.ID)
	got, err := s.GetCompany(ctx, a.p.ID, a.c.ID)
	must(t, "GetCompany", err)
	if got.Status != keys.StatusDisabled {
		t.Errorf("disabled company has status %q", got.Status)
	}
	must(t, "DisableCompany again", s.DisableCompany(ctx, a.p.ID, a.c.ID, at, event(at, "company.disabled", "company", a.c.ID)))

	err = s.DisableCompany(ctx, a.p.ID, b.c.ID, at, event(at, "company.disabled", "company", b.c.ID))
	wantErr(t, "DisableCompany(another partner's company)", err, keys.ErrNotFound)
	if got, err := s.GetCompany(ctx, b.p.ID, b.c.ID); err != nil || got.Status != keys.StatusActive {
		t.Errorf("another partner's company after a refused disable: status %q, err %v", got.Status, err)
	}
	err = s.DisableCompany(ctx, a.p.ID, "com_unknown", at, event(at, "company.disabled", "company", "com_unknown"))
	wantErr(t, "DisableCompany(unknown)", err, keys.ErrNotFound)

	// The partner itself is untouched; the company's key resolves inactive.
	wantActive(t, s, a.p.digest, a.p.principal())
	wantInactive(t, s, a.c.digest, a.c.principal())
	wantActive(t, s, b.c.digest, b.c.principal())
}
