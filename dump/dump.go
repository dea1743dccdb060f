// Package dump is the neutral form of a store's rows, for moving a
// database from one backend to another (keygate store copy): a Source
// reads every row of one consistent snapshot, in an order an importer can
// write it in (owners before what they own), and counts what it reads.
//
// The rows are the domain types of keys and tokens, with the few columns
// those leave out (a company's listing position, a key's digest, when an
// owner was disabled). Secrets stay as the store keeps them: key digests,
// signing keys and the refresh tokens' MAC key sealed under the master key;
// refresh tokens are not stored at all, only their families' state.
package dump

import (
	"context"
	"iter"
	"time"

	"keygate/keys"
	"keygate/tokens"
)

// Partner is a partner row.
type Partner struct {
	keys.Partner
	DisabledAt *time.Time
}

// Company is a company row. Seq is its position in its partner's listing
// (keys.Page.After): copied as is, so that a client's cursor stays valid.
type Company struct {
	keys.Company
	Seq        int64
	DisabledAt *time.Time
}

// Key is an API key row: the key's digest, never the key.
type Key struct {
	keys.Key
	Digest keys.Digest
}

// Counts are how many rows of each kind a snapshot holds.
type Counts struct {
	Partners, Companies, Keys, SigningKeys, SealedSecrets, Families, AuditEvents int64
}

// Source is one consistent snapshot of a store. Each method reads its rows
// once, oldest first; the iteration stops at the first error, which it
// yields. Families are those a copy needs (see Families).
type Source interface {
	Partners(ctx context.Context) iter.Seq2[Partner, error]
	Companies(ctx context.Context) iter.Seq2[Company, error]
	Keys(ctx context.Context) iter.Seq2[Key, error]
	SigningKeys(ctx context.Context) iter.Seq2[tokens.SigningKeyRecord, error]
	// SealedSecrets are the other secrets sealed under the master key (the
	// refresh tokens' MAC key), placeholders too: without them the copy's
	// refresh tokens would not be the source's.
	SealedSecrets(ctx context.Context) iter.Seq2[tokens.SealedSecret, error]
	// Families are the refresh-token families still needed at the
	// snapshot's time: every live one, and every one whose generation-0
	// token has not expired yet (without its row, that token would start
	// its family again, so a revoked or rotated family must keep it). A
	// dead family whose login token has expired refuses every token just
	// as well without its row. PrincipalActive is not set.
	Families(ctx context.Context) iter.Seq2[tokens.Family, error]
	AuditEvents(ctx context.Context) iter.Seq2[keys.AuditEvent, error]
	// KeyEpoch is the store's key epoch.
	KeyEpoch(ctx context.Context) (int64, error)
	// Counts counts what the methods above yield.
	Counts(ctx context.Context) (Counts, error)
	// Close ends the snapshot.
	Close() error
}
