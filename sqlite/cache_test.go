package sqlite_test

import (
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"keygate/keys"
	"keygate/sqlite"
	"keygate/tokens"
)

// TestWriterCacheSeesOtherConnections: the server's writer remembers which
// keys may act; a revocation or disabling committed by another handle on
// the same file (the CLI, another process) must reach its very next
// refresh, one made through the same handle too. Each such change moves the
// key epoch that every handle reads, so that caches of resolved keys (the
// keys package's) learn of it.
func TestWriterCacheSeesOtherConnections(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "k.db")
	server, cli := open(t, path), open(t, path)

	for _, tc := range []struct {
		name                     string
		change                   func(p, c keys.Principal, at time.Time) error
		partnerDies, companyDies bool
	}{
		{"key revoked by the CLI", func(p, _ keys.Principal, at time.Time) error {
			return cli.RevokeKey(ctx, p.Owner(), p.KeyID, at, keys.AuditEvent{At: at})
		}, true, false},
		{"company disabled by the CLI", func(_, c keys.Principal, at time.Time) error {
			return cli.DisableCompany(ctx, c.PartnerID, c.CompanyID, at, keys.AuditEvent{At: at})
		}, false, true},
		{"partner disabled by the CLI", func(p, _ keys.Principal, at time.Time) error {
			return cli.DisablePartner(ctx, p.PartnerID, at, keys.AuditEvent{At: at})
		}, true, true},
		{"key revoked through the server's own handle", func(p, _ keys.Principal, at time.Time) error {
			return server.RevokeKey(ctx, p.Owner(), p.KeyID, at, keys.AuditEvent{At: at})
		}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := createPartner(t, cli, "Acme")
			co := company(p.PartnerID, nil)
			if err := cli.CreateCompany(ctx, co.Company, co.key, co.digest, nil); err != nil {
				t.Fatal(err)
			}
			c := keys.PrincipalOf(co.key.ID, co.key.Owner, "")
			// Warm the server's cache: each key's first refresh and a second.
			fams := map[string]string{}
			for _, pr := range []keys.Principal{p, c} {
				fams[pr.KeyID] = firstRefresh(t, server, pr.KeyID)
				if !familyActive(t, server, fams[pr.KeyID]) {
					t.Fatal("family of an active key reads as inactive")
				}
			}
			before := epoch(t, server)

			if err := tc.change(p, c, time.Now()); err != nil {
				t.Fatal(err)
			}
			if got := epoch(t, server); got == before {
				t.Errorf("key epoch read through the server: %d before the change and after", got)
			}
			if a, b := epoch(t, server), epoch(t, cli); a != b {
				t.Errorf("key epoch: server reads %d, CLI %d", a, b)
			}
			for _, k := range []struct {
				what string
				p    keys.Principal
				dies bool
			}{{"partner key", p, tc.partnerDies}, {"company key", c, tc.companyDies}} {
				if got := familyActive(t, server, fams[k.p.KeyID]); got == k.dies {
					t.Errorf("%s: refresh right after the change sees PrincipalActive %v, want %v", k.what, got, !k.dies)
				}
				if got := seedActive(t, server, k.p.KeyID); got == k.dies {
					t.Errorf("%s: a login's first refresh right after the change sees PrincipalActive %v, want %v", k.what, got, !k.dies)
				}
				r, err := server.ResolveKeyID(ctx, k.p.KeyID)
				if err != nil || r.Active == k.dies {
					t.Errorf("%s: ResolveKeyID right after the change = %+v, %v; want Active %v", k.what, r, err, !k.dies)
				}
			}
		})
	}
}

// TestKeysServiceSeesOtherHandles: the keys package's cache of resolved
// keys, over one handle, learns of a revocation made through another within
// its check interval (well under a second of its clock), and of one made
// through itself at once.
func TestKeysServiceSeesOtherHandles(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "k.db")
	clock := &fakeClock{now: time.Now()}
	discard := slog.New(slog.DiscardHandler)
	server := keys.NewService(open(t, path), nil, clock.Now, discard)
	cli := keys.NewService(open(t, path), nil, time.Now, discard)

	for _, through := range []struct {
		name string
		svc  *keys.Service
		wait time.Duration
	}{{"another handle", cli, time.Second}, {"the same service", server, 0}} {
		t.Run(through.name, func(t *testing.T) {
			_, created, err := cli.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "Acme"})
			if err != nil {
				t.Fatal(err)
			}
			apiKey := created.APIKey.Reveal()
			p, err := server.Authenticate(ctx, apiKey) // warms the cache
			if err != nil {
				t.Fatalf("Authenticate before the revocation: %v", err)
			}
			if _, err := server.ActivePrincipal(ctx, p); err != nil {
				t.Fatalf("ActivePrincipal before the revocation: %v", err)
			}
			if err := through.svc.RevokeKey(ctx, keys.Operator, p.Owner(), p.KeyID); err != nil {
				t.Fatal(err)
			}
			clock.Advance(through.wait)
			if _, err := server.Authenticate(ctx, apiKey); !errors.Is(err, keys.ErrInvalidKey) {
				t.Errorf("Authenticate after the revocation: %v, want ErrInvalidKey", err)
			}
			if _, err := server.ActivePrincipal(ctx, p); !errors.Is(err, keys.ErrInactive) {
				t.Errorf("ActivePrincipal after the revocation: %v, want ErrInactive", err)
			}
		})
	}
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func epoch(t *testing.T, db *sqlite.DB) int64 {
	t.Helper()
	e, err := db.KeyEpoch(t.Context())
	if err != nil {
		t.Fatalf("KeyEpoch: %v", err)
	}
	return e
}

// familyActive is the PrincipalActive a refresh of the family would see.
func familyActive(t *testing.T, db *sqlite.DB, id string) bool {
	t.Helper()
	var active bool
	err := db.UpdateFamily(t.Context(), id, nil, func(f *tokens.Family) (tokens.Change, error) {
		active = f.PrincipalActive
		return tokens.Change{}, nil
	})
	if err != nil {
		t.Fatalf("UpdateFamily: %v", err)
	}
	return active
}

// seedActive is the PrincipalActive the first refresh of a new login by
// the key keyID would see; it writes nothing.
func seedActive(t *testing.T, db *sqlite.DB, keyID string) bool {
	t.Helper()
	seed := seedOf(keyID)
	var active bool
	err := db.UpdateFamily(t.Context(), seed.ID, &seed, func(f *tokens.Family) (tokens.Change, error) {
		active = f.PrincipalActive
		return tokens.Change{}, nil
	})
	if err != nil {
		t.Fatalf("UpdateFamily with a seed: %v", err)
	}
	return active
}

// TestWriterCacheFamiliesFollowOtherHandles: the writer remembers the rows
// of families it has read or written, so that a refresh skips the read;
// when another handle (another process) moves a family, or housekeeping
// deletes it, the next refresh through this handle must see the row as it
// is, not as this handle last left it.
func TestWriterCacheFamiliesFollowOtherHandles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.db")
	a, b := open(t, path), open(t, path)
	p, _ := createPartner(t, a, "Acme")
	id := firstRefresh(t, a, p.KeyID) // a has the row, at generation 1, cached

	gen := func(db *sqlite.DB) int64 {
		t.Helper()
		var g int64
		err := db.UpdateFamily(t.Context(), id, nil, func(f *tokens.Family) (tokens.Change, error) {
			g = f.Generation
			return tokens.Change{}, nil
		})
		if err != nil {
			t.Fatalf("reading family: %v", err)
		}
		return g
	}
	if err := b.UpdateFamily(t.Context(), id, nil, rotate); err != nil { // another process rotates it
		t.Fatal(err)
	}
	if g := gen(a); g != 2 {
		t.Fatalf("after another handle's rotation this handle sees generation %d, want 2", g)
	}
	if err := a.UpdateFamily(t.Context(), id, nil, rotate); err != nil {
		t.Fatalf("rotating after another handle did: %v", err)
	}
	if g := gen(b); g != 3 {
		t.Fatalf("the other handle sees generation %d, want 3", g)
	}

	// Housekeeping through this handle deletes the row: the cache forgets it.
	revoke := func(f *tokens.Family) (tokens.Change, error) {
		at := time.Now().Add(-time.Hour)
		f.RevokedAt, f.RevokeReason, f.ExpiresAt = &at, "logout", at
		return tokens.Change{Write: true}, nil
	}
	if err := a.UpdateFamily(t.Context(), id, nil, revoke); err != nil {
		t.Fatal(err)
	}
	if n, err := a.DeleteFamilies(t.Context(), time.Now().Add(48*time.Hour), 10); err != nil || n != 1 {
		t.Fatalf("DeleteFamilies = %d, %v", n, err)
	}
	err := a.UpdateFamily(t.Context(), id, nil, func(*tokens.Family) (tokens.Change, error) { return tokens.Change{}, nil })
	if !errors.Is(err, keys.ErrNotFound) {
		t.Fatalf("a deleted family read through the handle that deleted it: %v", err)
	}
}

// TestKeysServiceSeesSQLByHand: a change to what a login reads of a key,
// made with SQL by hand on the database file, reaches a serving process's
// cache within its epoch check (a second of its clock, far under its
// entries' lifetime), because triggers move the key epoch; a key's last
// use, written every minute, does not move it.
func TestKeysServiceSeesSQLByHand(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "k.db")
	clock := &fakeClock{now: time.Now()}
	store := open(t, path)
	svc := keys.NewService(store, nil, clock.Now, slog.New(slog.DiscardHandler))
	sqlDB := raw(t, path)

	for _, tc := range []struct {
		name string
		sql  string // ?1 is the key's id, ?2 its company's, ?3 its partner's
		want func(p keys.Principal, err error) bool
	}{
		{"key revoked", `UPDATE api_keys SET revoked_at = 1 WHERE id = ?1`, invalid},
		{"key deleted", `DELETE FROM api_keys WHERE id = ?1`, invalid},
		{"key expired", `UPDATE api_keys SET expires_at = 1 WHERE id = ?1`, invalid},
		{"company disabled", `UPDATE companies SET status = 'disabled' WHERE id = ?2`, invalid},
		{"partner disabled", `UPDATE partners SET status = 'disabled' WHERE id = ?3`, invalid},
		{"company renamed", `UPDATE companies SET name = 'Renamed' WHERE id = ?2`, func(p keys.Principal, err error) bool {
			return err == nil && p.Name == "Renamed"
		}},
		{"key's scopes narrowed", `UPDATE api_keys SET scopes = 'a' WHERE id = ?1`, func(p keys.Principal, err error) bool {
			return err == nil && p.Scopes.String() == "a"
		}},
		{"partner's scopes narrowed", `UPDATE partners SET scopes = 'b' WHERE id = ?3`, func(p keys.Principal, err error) bool {
			return err == nil && p.Scopes.String() == "b"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			partner, _, err := svc.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "Acme", Scopes: keys.StoredScopes("a b")})
			if err != nil {
				t.Fatal(err)
			}
			_, created, err := svc.CreateCompany(ctx, keys.Operator, partner.ID, keys.CompanyInput{Name: "Initech"})
			if err != nil {
				t.Fatal(err)
			}
			apiKey := created.APIKey.Reveal()
			p, err := svc.Authenticate(ctx, apiKey) // warms the cache
			if err != nil || p.Scopes.String() != "a b" {
				t.Fatalf("Authenticate before the change: %+v, %v", p, err)
			}
			before := epoch(t, store)
			if _, err := sqlDB.ExecContext(ctx, `UPDATE api_keys SET last_used_at = 5 WHERE id = ?`, p.KeyID); err != nil {
				t.Fatal(err)
			}
			if got := epoch(t, store); got != before {
				t.Errorf("writing a last use moved the key epoch %d → %d", before, got)
			}
			if _, err := sqlDB.ExecContext(ctx, tc.sql, p.KeyID, p.CompanyID, p.PartnerID); err != nil {
				t.Fatal(err)
			}
			clock.Advance(time.Second)
			if got, err := svc.Authenticate(ctx, apiKey); !tc.want(got, err) {
				t.Errorf("Authenticate after the change: %+v, %v", got, err)
			}
		})
	}
}

func invalid(_ keys.Principal, err error) bool { return errors.Is(err, keys.ErrInvalidKey) }
