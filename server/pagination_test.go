package server_test

import (
	"fmt"
	"slices"
	"testing"
)

// TestCompanyPaginationOfOnePartner walks one partner's companies, created
// one after another with nothing in between, at small limits: a cursor
// that skips or repeats a row shows here, where interleaving another
// partner's companies (TestCompanyPagination) would hide a skipped row
// that is not the partner's own.
func TestCompanyPaginationOfOnePartner(t *testing.T) {
	t.Parallel()
	for _, limit := range []int{1, 2, 3} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			a := e.tenant("Partner A")
			var want []string
			for i := range 7 {
				want = append(want, e.createCompany(a.pair.JWT, fmt.Sprintf(`{"name":"company %d"}`, i)).ID)
			}
			var got []string
			path := fmt.Sprintf("%s?limit=%d", companiesPath, limit)
			for pages := 0; ; pages++ {
				if pages > len(want) {
					t.Fatalf("the walk does not end: %v", got)
				}
				page := decodeInto[companyPage](t, e.get(path, a.pair.JWT))
				if len(page.Companies) > limit {
					t.Fatalf("page of %d companies at limit %d", len(page.Companies), limit)
				}
				for _, c := range page.Companies {
					got = append(got, c.ID)
				}
				if page.NextCursor == nil {
					break
				}
				path = fmt.Sprintf("%s?limit=%d&cursor=%s", companiesPath, limit, *page.NextCursor)
			}
			if !slices.Equal(got, want) {
				t.Errorf("walked %v\nwant    %v", got, want)
			}
		})
	}
}
