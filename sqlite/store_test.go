package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"keygate/keys"
	"keygate/sqlite"
	"keygate/store"
	"keygate/storetest"
	"keygate/tokens"
)

func TestStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, filepath.Join(t.TempDir(), "k.db"))
	})
}

// open opens the database at path and closes it when the test ends.
func open(t testing.TB, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(t.Context(), sqlite.Options{Path: path})
	if err != nil {
		t.Fatalf("sqlite.Open(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

// raw opens the file with the driver itself, to look at what the store
// keeps from outside it.
func raw(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatalf("opening %s: %v", path, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func partner(name string, at time.Time) (keys.Partner, keys.Key, keys.Digest) {
	p := keys.Partner{ID: keys.NewID("par_"), Name: name, Status: keys.StatusActive, CreatedAt: at}
	secret := keys.NewAPIKey(keys.PartnerKeyPrefix).Reveal()
	k := keys.Key{ID: keys.NewID("key_"), Owner: keys.PartnerOwner(p.ID), Hint: keys.Hint(secret), CreatedAt: at}
	return p, k, keys.DigestOf(secret)
}

// createPartner creates a partner and returns the principal of its key and
// the key's digest, which logs in.
func createPartner(t testing.TB, db *sqlite.DB, name string) (keys.Principal, keys.Digest) {
	t.Helper()
	p, k, d := partner(name, time.Now())
	if err := db.CreatePartner(context.Background(), p, k, d, nil); err != nil {
		t.Fatalf("CreatePartner: %v", err)
	}
	return keys.Principal{Kind: keys.KindPartner, ID: p.ID, PartnerID: p.ID, KeyID: k.ID, Name: name}, d
}

// seedOf is the family a login's generation-0 token of the key keyID
// stands for; the store fills in the principal.
func seedOf(keyID string) tokens.Family {
	now := time.Now()
	return tokens.Family{ID: keys.NewID("fam_"), Principal: keys.Principal{KeyID: keyID},
		CreatedAt: now, RotatedAt: now, ExpiresAt: now.Add(time.Hour), FirstExpiresAt: now.Add(time.Hour)}
}

// rotate is a refresh's decision: the next generation.
func rotate(f *tokens.Family) (tokens.Change, error) {
	now := time.Now()
	f.ParentExpiresAt, f.Generation, f.RotatedAt, f.ExpiresAt = f.ExpiresAt, f.Generation+1, now, now.Add(time.Hour)
	return tokens.Change{Write: true}, nil
}

// firstRefresh is the first refresh of a login by the key keyID: it
// inserts the family's row at generation 1 and returns the family's id.
func firstRefresh(t testing.TB, db *sqlite.DB, keyID string) string {
	t.Helper()
	seed := seedOf(keyID)
	if err := db.UpdateFamily(t.Context(), seed.ID, &seed, rotate); err != nil {
		t.Fatalf("UpdateFamily with the seed of key %s: %v", keyID, err)
	}
	return seed.ID
}

// Two processes (the server and the CLI) may open one fresh file at once.
func TestOpenFreshFileConcurrently(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fresh", "k.db")
	const n = 4
	dbs := make([]*sqlite.DB, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			dbs[i], errs[i] = sqlite.Open(t.Context(), sqlite.Options{Path: path})
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("Open %d: %v", i, errs[i])
			continue
		}
		t.Cleanup(func() { dbs[i].Close() })
	}
	files, _ := filepath.Glob("migrations/*.sql")
	if got := appliedMigrations(t, path); len(got) != len(files) {
		t.Errorf("schema_migrations after concurrent opens = %+v, want %d rows", got, len(files))
	}
}

// Two handles on one file, as the server and the CLI have, write at full
// tilt: neither ever sees "database is locked", and a read-modify-write of
// one family through both handles loses no update.
func TestTwoHandlesWriteConcurrently(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.db")
	dbs := []*sqlite.DB{open(t, path), open(t, path)}
	ctx := t.Context()
	owner, _ := createPartner(t, dbs[0], "Acme")
	shared := firstRefresh(t, dbs[1], owner.KeyID)

	const writers, rounds = 8, 15
	var mu sync.Mutex
	var failures []error
	var created []string
	fail := func(err error) {
		mu.Lock()
		failures = append(failures, err)
		mu.Unlock()
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for h, db := range dbs {
		for w := range writers {
			wg.Go(func() {
				<-start
				for r := range rounds {
					p, k, d := partner(fmt.Sprintf("p-%d-%d-%d", h, w, r), time.Now())
					if err := db.CreatePartner(ctx, p, k, d, nil); err != nil {
						fail(fmt.Errorf("handle %d CreatePartner: %w", h, err))
						continue
					}
					mu.Lock()
					created = append(created, p.ID)
					mu.Unlock()
					seed := seedOf(owner.KeyID)
					if err := db.UpdateFamily(ctx, seed.ID, &seed, rotate); err != nil {
						fail(fmt.Errorf("handle %d first refresh: %w", h, err))
					}
					err := db.UpdateFamily(ctx, shared, nil, func(f *tokens.Family) (tokens.Change, error) {
						f.Generation++
						return tokens.Change{Write: true}, nil
					})
					if err != nil {
						fail(fmt.Errorf("handle %d UpdateFamily: %w", h, err))
					}
				}
			})
		}
	}
	close(start)
	wg.Wait()

	for _, err := range failures {
		t.Error(err)
		if errors.Is(err, keys.ErrUnavailable) || strings.Contains(err.Error(), "locked") {
			t.Errorf("a write hit a lock: %v", err)
		}
	}
	if len(failures) > 0 {
		t.FailNow()
	}
	for h, db := range dbs {
		ps, err := db.ListPartners(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != len(created)+1 {
			t.Errorf("handle %d sees %d partners, want %d", h, len(ps), len(created)+1)
		}
	}
	var gen int64
	if err := dbs[0].UpdateFamily(ctx, shared, nil, func(f *tokens.Family) (tokens.Change, error) {
		gen = f.Generation
		return tokens.Change{}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := int64(1 + len(dbs)*writers*rounds); gen != want {
		t.Errorf("generation after %d increments through two handles = %d, want %d", want-1, gen, want)
	}
	if got, want := countFamilies(t, path), 1+len(dbs)*writers*rounds; got != want {
		t.Errorf("%d families after %d first refreshes, want %d", got, want-1, want)
	}
	for h, db := range dbs {
		if err := db.IntegrityCheck(ctx); err != nil {
			t.Errorf("handle %d: %v", h, err)
		}
	}
}

// A login's token refreshed through two handles at once (two processes
// on one file) still makes one row: the first refresh's read and insert
// share one immediate transaction, so one handle inserts and the other
// finds the row.
func TestTwoHandlesSeedOneFamily(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.db")
	dbs := []*sqlite.DB{open(t, path), open(t, path)}
	p, _ := createPartner(t, dbs[0], "Acme")
	seed := seedOf(p.KeyID)

	const perHandle = 20
	var inserts atomic.Int32
	errs := make(chan error, len(dbs)*perHandle)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, db := range dbs {
		for range perHandle {
			wg.Go(func() {
				sd := seed
				<-start
				errs <- db.UpdateFamily(t.Context(), sd.ID, &sd, func(f *tokens.Family) (tokens.Change, error) {
					if f.Generation != 0 {
						return tokens.Change{}, nil
					}
					inserts.Add(1)
					return rotate(f)
				})
			})
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("UpdateFamily with the seed: %v", err)
		}
	}
	if n := inserts.Load(); n != 1 {
		t.Errorf("%d refreshes saw no row and inserted it, want 1", n)
	}
	if n := countFamilies(t, path); n != 1 {
		t.Errorf("%d families, want 1", n)
	}
}

func TestIntegrityCheck(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "k.db"))
	p, _ := createPartner(t, db, "Acme")
	for range 20 {
		firstRefresh(t, db, p.KeyID)
	}
	if _, err := db.DeleteFamilies(t.Context(), time.Now().Add(2*time.Hour), 10); err != nil {
		t.Fatal(err)
	}
	if err := db.IntegrityCheck(t.Context()); err != nil {
		t.Errorf("IntegrityCheck: %v", err)
	}
}

// Many writes in flight at once, some bound to fail: each failure reaches
// only its own caller, and every other write of its batch commits.
func TestGroupCommitFailsOnlyTheFailingWrite(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "k.db"))
	ctx := t.Context()
	p, _ := createPartner(t, db, "Acme")
	taken := "taken"
	first := company(p.PartnerID, &taken)
	if err := db.CreateCompany(ctx, first.Company, first.key, first.digest, nil); err != nil {
		t.Fatal(err)
	}

	// A slow write at the head of the line holds the writer, so the writes
	// below pile up behind it and go out in few, large batches.
	hold, held := make(chan struct{}), make(chan struct{})
	blocker := firstRefresh(t, db, p.KeyID)
	var wg sync.WaitGroup
	wg.Go(func() {
		err := db.UpdateFamily(ctx, blocker, nil, func(*tokens.Family) (tokens.Change, error) {
			close(held)
			<-hold
			return tokens.Change{}, nil
		})
		if err != nil {
			t.Errorf("blocking UpdateFamily: %v", err)
		}
	})
	<-held

	const n = 100
	inputs := make([]newCompany, n)
	errs := make([]error, n)
	for i := range n {
		ext := fmt.Sprintf("ext-%d", i)
		if i%20 == 0 {
			ext = taken // fails at once: the partner already has it
		}
		inputs[i] = company(p.PartnerID, &ext)
		if i%20 == 10 {
			// Fails after its company row is written: the key's digest is
			// taken. The row must go with it.
			inputs[i].digest = first.digest
		}
		wg.Go(func() {
			c := inputs[i]
			errs[i] = db.CreateCompany(ctx, c.Company, c.key, c.digest, []keys.AuditEvent{{At: time.Now(), ActorType: keys.ActorOperator, ActorID: "operator", Action: "company.created", TargetType: "company", Target: c.ID, Addr: "local", Outcome: keys.OutcomeSuccess}})
		})
	}
	close(hold)
	wg.Wait()

	for i, err := range errs {
		c := inputs[i]
		_, gerr := db.GetCompany(ctx, p.PartnerID, c.ID)
		_, kerr := db.ResolveKeyID(ctx, c.key.ID)
		if i%10 == 0 {
			if !errors.Is(err, keys.ErrConflict) {
				t.Errorf("write %d (duplicate externalId or digest): err = %v, want ErrConflict", i, err)
			}
			if !errors.Is(gerr, keys.ErrNotFound) || !errors.Is(kerr, keys.ErrInvalidKey) {
				t.Errorf("write %d failed but left rows behind: GetCompany %v, ResolveKeyID of its key %v", i, gerr, kerr)
			}
			continue
		}
		if err != nil {
			t.Errorf("write %d: %v", i, err)
		}
		if gerr != nil || kerr != nil {
			t.Errorf("write %d succeeded but its rows are missing: GetCompany %v, ResolveKeyID of its key %v", i, gerr, kerr)
		}
	}
	evs, err := db.ListAudit(ctx, keys.AuditCursor{}, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(evs), n-n/10; got != want {
		t.Errorf("audit events = %d, want %d: one per committed company, none of the failed", got, want)
	}
	if err := db.IntegrityCheck(ctx); err != nil {
		t.Error(err)
	}
}

type newCompany struct {
	keys.Company
	key    keys.Key
	digest keys.Digest
}

func company(partnerID string, externalID *string) newCompany {
	now := time.Now()
	c := keys.Company{ID: keys.NewID("com_"), PartnerID: partnerID, Name: "Company", ExternalID: externalID, Status: keys.StatusActive, CreatedAt: now}
	secret := keys.NewAPIKey(keys.CompanyKeyPrefix).Reveal()
	k := keys.Key{ID: keys.NewID("key_"), Owner: keys.CompanyOwner(partnerID, c.ID), Hint: keys.Hint(secret), CreatedAt: now}
	return newCompany{Company: c, key: k, digest: keys.DigestOf(secret)}
}

// A write whose caller gave up before it started is not made.
func TestWriteAfterCallerLeft(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "k.db"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	p, k, d := partner("Acme", time.Now())
	if err := db.CreatePartner(ctx, p, k, d, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("CreatePartner with a cancelled context: err = %v, want context.Canceled", err)
	}
	if _, err := db.ResolveKey(t.Context(), d); !errors.Is(err, keys.ErrInvalidKey) {
		t.Errorf("login after a cancelled create: ResolveKey err = %v, want ErrInvalidKey", err)
	}
}

func TestWriteAfterClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.db")
	db, err := sqlite.Open(t.Context(), sqlite.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	p, k, d := partner("Acme", time.Now())
	if err := db.CreatePartner(t.Context(), p, k, d, nil); !errors.Is(err, sqlite.ErrClosed) {
		t.Errorf("CreatePartner after Close: err = %v, want ErrClosed", err)
	}
}

func TestOpenRefusesUnknownSynchronousMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.db")
	if _, err := sqlite.Open(t.Context(), sqlite.Options{Path: path, Synchronous: "SOMETIMES"}); err == nil {
		t.Fatal("Open accepted synchronous=SOMETIMES")
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused Open left a database file behind: %v", err)
	}
}
