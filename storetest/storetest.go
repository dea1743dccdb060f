// Package storetest is one contract suite every store implementation must
// pass: the semantics the keys.Store, tokens.Store and store.Store doc
// comments promise, checked the same way against SQLite, the in-memory
// store and any backend that comes later, so that none of them drifts from
// what the services rely on.
//
// One file per topic: fixtures.go and assert.go hold the suite's helpers,
// keys.go partners and their keys, owners.go what an Owner may name,
// principals.go who a key speaks for (ResolveKey, ResolveKeyID), epoch.go
// the key epoch, companies.go companies, audit.go usage and the audit
// trail, signingkeys.go the signing keys, secrets.go the sealed secrets
// and re-sealing, families.go refresh-token families and seeds.go how a
// login's family gets its row.
package storetest

import (
	"testing"
	"time"

	"keygate/store"
)

// Run runs the contract against stores made by open, a fresh empty one per
// subtest. open registers its own cleanup with t, which closes the store.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"ReadyAndClose", testReadyAndClose},
		{"Partners", testPartners},
		{"CreatePartnerIsAtomic", testCreatePartnerIsAtomic},
		{"CreateKey", testCreateKey},
		{"ListKeys", testListKeys},
		{"RevokeKey", testRevokeKey},
		{"OwnersNamingNoOne", testOwnersNamingNoOne},
		{"FirstKeyOfAnotherOwner", testFirstKeyOfAnotherOwner},
		{"ResolveKey", testResolveKey},
		{"KeyEpoch", testKeyEpoch},
		{"CreateCompany", testCreateCompany},
		{"CreateCompanyConcurrentExternalID", testCreateCompanyConcurrentExternalID},
		{"GetCompany", testGetCompany},
		{"ListCompanies", testListCompanies},
		{"ListCompaniesWhileAdding", testListCompaniesWhileAdding},
		{"DisableCompany", testDisableCompany},
		{"RecordUsage", testRecordUsage},
		{"RecordUsageMany", testRecordUsageMany},
		{"ListAudit", testListAudit},
		{"DeleteAudit", testDeleteAudit},
		{"PartnerScopes", testPartnerScopes},
		{"KeyFields", testKeyFields},
		{"FamilyScopes", testFamilyScopes},
		{"SigningKeys", testSigningKeys},
		{"SealedSecrets", testSealedSecrets},
		{"SealedSecretsConcurrent", testSealedSecretsConcurrent},
		{"Reseal", testReseal},
		{"Family", testFamily},
		{"FamilyPrincipalActive", testFamilyPrincipalActive},
		{"UpdateFamilyDecisions", testUpdateFamilyDecisions},
		{"UpdateFamilyConcurrent", testUpdateFamilyConcurrent},
		{"UpdateFamilySeed", testUpdateFamilySeed},
		{"UpdateFamilySeedConcurrent", testUpdateFamilySeedConcurrent},
		{"UpdateFamilySeedKeepsItsID", testUpdateFamilySeedKeepsItsID},
		{"DeleteFamilies", testDeleteFamilies},
		{"DeleteFamiliesLimit", testDeleteFamiliesLimit},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

// t0 is the suite's clock. It has a non-UTC zone and sub-millisecond digits
// on purpose: stores give times back in UTC at millisecond precision.
var t0 = time.Date(2026, 6, 26, 9, 56, 42, 199_654_321, time.FixedZone("CEST", 2*60*60))

// stored is what a store gives back for t.
func stored(t time.Time) time.Time { return t.Truncate(time.Millisecond).UTC() }

func ptr[T any](v T) *T { return &v }

// testReadyAndClose: a fresh store is ready, and stays so after a write; it
// closes without error. open's cleanup then closes it a second time, which
// must not fail either: keygate serve closes the store after draining and
// again in a defer.
func testReadyAndClose(t *testing.T, s store.Store) {
	must(t, "Ready on a fresh store", s.Ready(t.Context()))
	createPartner(t, s, "Acme", t0)
	must(t, "Ready after a write", s.Ready(t.Context()))
	must(t, "Close", s.Close())
}
