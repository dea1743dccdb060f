package sqlite_test

import (
	"database/sql"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"keygate/keys"
	"keygate/sqlite"
	"keygate/tokens"
)

type migration struct {
	Version int
	Name    string
	Applied int64
}

func appliedMigrations(t *testing.T, path string) []migration {
	t.Helper()
	rows, err := raw(t, path).Query(`SELECT version, name, applied_at FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatalf("reading schema_migrations: %v", err)
	}
	defer rows.Close()
	var out []migration
	for rows.Next() {
		var m migration
		if err := rows.Scan(&m.Version, &m.Name, &m.Applied); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMigrationsRecordedAndReopenIsNoop(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.db")
	files, err := filepath.Glob("migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no migrations found: %v", err)
	}
	var want []migration
	for _, f := range files {
		base := filepath.Base(f)
		v, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			t.Fatalf("migration %s: %v", base, err)
		}
		want = append(want, migration{Version: v, Name: base})
	}

	db, err := sqlite.Open(t.Context(), sqlite.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	p, k, d := partner("Acme", time.Now())
	if err := db.CreatePartner(t.Context(), p, k, d, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	first := appliedMigrations(t, path)
	if len(first) != len(want) {
		t.Fatalf("schema_migrations = %+v, want one row per file %+v", first, want)
	}
	for i := range want {
		if first[i].Version != want[i].Version || first[i].Name != want[i].Name || first[i].Applied == 0 {
			t.Errorf("schema_migrations[%d] = %+v, want version %d name %s with a time", i, first[i], want[i].Version, want[i].Name)
		}
	}

	db2 := open(t, path)
	if got := appliedMigrations(t, path); !slices.Equal(got, first) {
		t.Errorf("reopening changed schema_migrations:\n got %+v\nwant %+v", got, first)
	}
	ps, err := db2.ListPartners(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].ID != p.ID {
		t.Errorf("after reopening, partners = %+v, want just %s", ps, p.ID)
	}
	if got, err := db2.ResolveKey(t.Context(), d); err != nil || got.Principal.KeyID != k.ID || !got.Active {
		t.Errorf("after reopening, login with the key: ResolveKey = %+v, %v", got, err)
	}
}

// TestMigration0002KeepsFamilies: a database the first release made (only
// migration 0001 applied) keeps its refresh-token families through 0002,
// which rebuilds their table: each reads back as it was, with no
// generation-0 expiry, and goes on rotating and being cleaned up as before.
func TestMigration0002KeepsFamilies(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v1.db")
	schemaV1, err := os.ReadFile("migrations/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	at := time.UnixMilli(1_782_460_602_123).UTC()
	msAt := func(d time.Duration) int64 { return at.Add(d).UnixMilli() }
	p, pk, pd := partner("Acme", at)
	c := company(p.ID, nil)
	revokedAt := at.Add(30 * time.Minute)
	live := tokens.Family{ID: keys.NewID("fam_"), Principal: keys.PrincipalOf(pk.ID, pk.Owner, ""), CreatedAt: at,
		Generation: 3, RotatedAt: at.Add(20 * time.Minute), ExpiresAt: at.Add(80 * time.Minute), ParentExpiresAt: at.Add(70 * time.Minute)}
	revoked := tokens.Family{ID: keys.NewID("fam_"), Principal: keys.PrincipalOf(c.key.ID, c.key.Owner, ""), CreatedAt: at,
		Generation: 1, RotatedAt: at, ExpiresAt: at.Add(time.Hour), RevokedAt: &revokedAt, RevokeReason: "logout"}

	v1, err := sql.Open("sqlite3", "file:"+path+"?_foreign_keys=1")
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []struct {
		q    string
		args []any
	}{
		{`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT`, nil},
		{string(schemaV1), nil},
		{`INSERT INTO schema_migrations (version, name, applied_at) VALUES (1, '0001_init.sql', ?)`, []any{msAt(0)}},
		{`INSERT INTO partners (id, name, status, created_at) VALUES (?, ?, 'active', ?)`, []any{p.ID, p.Name, msAt(0)}},
		{`INSERT INTO companies (id, partner_id, name, status, created_at) VALUES (?, ?, ?, 'active', ?)`, []any{c.ID, p.ID, c.Name, msAt(0)}},
		{`INSERT INTO api_keys (id, digest, hint, partner_id, company_id, created_at) VALUES (?, ?, ?, ?, NULL, ?), (?, ?, ?, ?, ?, ?)`,
			[]any{pk.ID, pd[:], pk.Hint, p.ID, msAt(0), c.key.ID, c.digest[:], c.key.Hint, p.ID, c.ID, msAt(0)}},
		{`INSERT INTO refresh_families (id, key_id, kind, principal_id, partner_id, company_id, created_at, generation,
			rotated_at, expires_at, parent_expires_at, revoked_at, revoke_reason) VALUES
			(?, ?, 'partner', ?, ?, NULL, ?, 3, ?, ?, ?, NULL, NULL),
			(?, ?, 'company', ?, ?, ?, ?, 1, ?, ?, NULL, ?, 'logout')`,
			[]any{live.ID, pk.ID, p.ID, p.ID, msAt(0), msAt(20 * time.Minute), msAt(80 * time.Minute), msAt(70 * time.Minute),
				revoked.ID, c.key.ID, c.ID, p.ID, c.ID, msAt(0), msAt(0), msAt(time.Hour), msAt(30 * time.Minute)}},
	} {
		if _, err := v1.Exec(st.q, st.args...); err != nil {
			v1.Close()
			t.Fatalf("making the v1 database: %v", err)
		}
	}
	if err := v1.Close(); err != nil {
		t.Fatal(err)
	}

	db := open(t, path)
	ctx := t.Context()
	if got := appliedMigrations(t, path); len(got) < 2 || got[0].Version != 1 || got[0].Applied != msAt(0) || got[1].Version != 2 {
		t.Errorf("schema_migrations after the upgrade = %+v, want 0001 as it was, then 0002", got)
	}
	if epoch, err := db.KeyEpoch(ctx); err != nil {
		t.Errorf("KeyEpoch after the upgrade: %d, %v", epoch, err)
	}
	read := func(id string) tokens.Family {
		t.Helper()
		var got tokens.Family
		if err := db.UpdateFamily(ctx, id, nil, func(f *tokens.Family) (tokens.Change, error) {
			got = *f
			return tokens.Change{}, nil
		}); err != nil {
			t.Fatalf("UpdateFamily(%s) after the upgrade: %v", id, err)
		}
		return got
	}
	for _, want := range []tokens.Family{live, revoked} {
		want.PrincipalActive = true
		if got := read(want.ID); !sameFamily(got, want) {
			t.Errorf("family after the upgrade:\n got %+v\nwant %+v", got, want)
		}
	}

	// A seed naming an old family finds its row; a rotation works.
	seed := seedOf(c.key.ID)
	seed.ID = live.ID
	var gen int64
	if err := db.UpdateFamily(ctx, live.ID, &seed, func(f *tokens.Family) (tokens.Change, error) {
		gen = f.Generation
		return rotate(f)
	}); err != nil || gen != 3 {
		t.Errorf("rotating an old family: saw generation %d, err %v; want 3, nil", gen, err)
	}
	if got := read(live.ID); got.Generation != 4 || !got.FirstExpiresAt.IsZero() {
		t.Errorf("old family after a rotation: generation %d, FirstExpiresAt %v; want 4, zero", got.Generation, got.FirstExpiresAt)
	}
	// Housekeeping counts the old rows' missing generation-0 expiry as past.
	if n, err := db.DeleteFamilies(ctx, revokedAt.Add(time.Millisecond), 10); err != nil || n != 1 {
		t.Errorf("DeleteFamilies after the upgrade = %d, %v; want 1 (the revoked family)", n, err)
	}
	if got := countFamilies(t, path); got != 1 {
		t.Errorf("%d families left, want the live one", got)
	}
}

// sameFamily compares families field by field, times as instants.
func sameFamily(got, want tokens.Family) bool {
	sameTimePtr := func(a, b *time.Time) bool { return a == nil && b == nil || a != nil && b != nil && a.Equal(*b) }
	return got.ID == want.ID && got.Principal == want.Principal && got.Generation == want.Generation &&
		got.CreatedAt.Equal(want.CreatedAt) && got.RotatedAt.Equal(want.RotatedAt) && got.ExpiresAt.Equal(want.ExpiresAt) &&
		got.ParentExpiresAt.Equal(want.ParentExpiresAt) && got.FirstExpiresAt.Equal(want.FirstExpiresAt) &&
		sameTimePtr(got.RevokedAt, want.RevokedAt) && got.RevokeReason == want.RevokeReason && got.PrincipalActive == want.PrincipalActive
}
