package sqlite_test

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"keygate/keys"
	"keygate/sqlite"
	"keygate/tokens"
)

// TestWriterCacheSeesOtherConnections: the server's writer remembers keys
// it has resolved; a revocation or disabling committed by another handle
// on the same file (the CLI, another process) must reach its very next
// login and refresh, and one made through the same handle too.
func TestWriterCacheSeesOtherConnections(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "k.db")
	server, cli := open(t, path), open(t, path)

	for _, tc := range []struct {
		name   string
		revoke func(p keys.Principal, at time.Time) error
	}{
		{"key revoked by the CLI", func(p keys.Principal, at time.Time) error {
			return cli.RevokeKey(ctx, p.Owner(), p.KeyID, at, keys.AuditEvent{At: at})
		}},
		{"partner disabled by the CLI", func(p keys.Principal, at time.Time) error {
			return cli.DisablePartner(ctx, p.PartnerID, at, keys.AuditEvent{At: at})
		}},
		{"key revoked through the server's own handle", func(p keys.Principal, at time.Time) error {
			return server.RevokeKey(ctx, p.Owner(), p.KeyID, at, keys.AuditEvent{At: at})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, k, d := partner("Acme", time.Now())
			if err := cli.CreatePartner(ctx, p, k, d, nil); err != nil {
				t.Fatal(err)
			}
			// Warm the server's cache with a login and a refresh.
			f := newFamily()
			principal, err := server.StartFamily(ctx, d, f)
			if err != nil {
				t.Fatalf("first login: %v", err)
			}
			if !familyActive(t, server, f.ID) {
				t.Fatal("family of an active key reads as inactive")
			}

			if err := tc.revoke(principal, time.Now()); err != nil {
				t.Fatal(err)
			}
			if _, err := server.StartFamily(ctx, d, newFamily()); !errors.Is(err, keys.ErrInvalidKey) {
				t.Errorf("login right after the revocation: %v, want ErrInvalidKey", err)
			}
			if familyActive(t, server, f.ID) {
				t.Error("refresh right after the revocation still sees an active principal")
			}
		})
	}
}

func familyActive(t *testing.T, db *sqlite.DB, id string) bool {
	t.Helper()
	var active bool
	err := db.UpdateFamily(t.Context(), id, func(f *tokens.Family) (tokens.Change, error) {
		active = f.PrincipalActive
		return tokens.Change{}, nil
	})
	if err != nil {
		t.Fatalf("UpdateFamily: %v", err)
	}
	return active
}
