package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"keygate/keys"
	"keygate/postgres"
	"keygate/postgres/pgtest"
	"keygate/tokens"
)

// Several replicas on one database: each test opens two handles (two
// pools, as two keygate processes would) on one schema and checks that a
// guarantee holds between them, decided by the database.

var t0 = time.Date(2026, 6, 26, 9, 56, 42, 199_000_000, time.UTC)

// replicas opens n handles on one fresh schema.
func replicas(t *testing.T, n int) []*postgres.DB {
	t.Helper()
	return replicasWith(t, n, "")
}

// replicasWith is replicas with extra appended to their URL.
func replicasWith(t *testing.T, n int, extra string) []*postgres.DB {
	t.Helper()
	dbURL, _ := pgtest.Schema(t)
	out := make([]*postgres.DB, n)
	for i := range out {
		out[i] = openURL(t, dbURL+extra)
	}
	return out
}

func newService(db *postgres.DB) *keys.Service {
	return keys.NewService(db, nil, time.Now, slog.New(slog.DiscardHandler))
}

// A login's token refreshed 50 times at once, half through each replica:
// one first refresh inserts the family's row, every other one finds it.
func TestReplicasSeedOneFamily(t *testing.T) {
	dbs := replicas(t, 2)
	svc := newService(dbs[0])
	_, k, err := svc.CreatePartner(t.Context(), keys.Operator, keys.PartnerInput{Name: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	seed := tokens.Family{ID: keys.NewID("fam_"), Principal: keys.Principal{KeyID: k.ID},
		CreatedAt: t0, RotatedAt: t0, ExpiresAt: t0.Add(time.Hour), FirstExpiresAt: t0.Add(time.Hour)}

	const n = 50
	start := make(chan struct{})
	saw := make([]int64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sd := seed
			<-start
			errs[i] = dbs[i%2].UpdateFamily(t.Context(), sd.ID, &sd, func(f *tokens.Family) (tokens.Change, error) {
				runtime.Gosched()
				saw[i] = f.Generation
				if f.Generation != 0 {
					return tokens.Change{}, nil
				}
				f.Generation, f.RotatedAt = 1, t0.Add(time.Duration(i+1)*time.Second)
				return tokens.Change{Write: true}, nil
			})
		})
	}
	close(start)
	wg.Wait()
	inserted := 0
	for i := range n {
		if errs[i] != nil {
			t.Errorf("refresh %d: %v", i, errs[i])
		}
		if saw[i] == 0 {
			inserted++
		} else if saw[i] != 1 {
			t.Errorf("refresh %d saw generation %d", i, saw[i])
		}
	}
	if inserted != 1 {
		t.Errorf("%d refreshes saw no row and inserted it, want 1", inserted)
	}
}

// A key revoked through one replica is refused by the other's logins and
// refreshes at once.
func TestReplicasSeeRevocation(t *testing.T) {
	dbs := replicas(t, 2)
	a, b := newService(dbs[0]), newService(dbs[1])
	ctx := t.Context()
	p, k, err := b.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, k.APIKey.Reveal()); err != nil {
		t.Fatalf("replica A, before the revocation: %v", err)
	}
	if err := b.RevokeKey(ctx, keys.Operator, keys.PartnerOwner(p.ID), k.ID); err != nil {
		t.Fatal(err)
	}
	// A's family check reads the key in its own transaction: at once.
	seed := tokens.Family{ID: keys.NewID("fam_"), Principal: keys.Principal{KeyID: k.ID},
		CreatedAt: t0, RotatedAt: t0, ExpiresAt: t0.Add(time.Hour), FirstExpiresAt: t0.Add(time.Hour)}
	err = dbs[0].UpdateFamily(ctx, seed.ID, &seed, func(f *tokens.Family) (tokens.Change, error) {
		if f.PrincipalActive {
			t.Errorf("replica A's refresh sees the key B revoked as active")
		}
		return tokens.Change{}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A's logins: at once, though A's cache holds the key (each login
	// waits for an epoch read that started after it).
	if _, err := a.Authenticate(ctx, k.APIKey.Reveal()); !errors.Is(err, keys.ErrInvalidKey) {
		t.Errorf("replica A's login with a key replica B revoked: %v, want ErrInvalidKey", err)
	}
}

// Companies created through two replicas while a client pages through the
// list: the walk sees every one exactly once.
func TestReplicasListCompaniesWhileAdding(t *testing.T) {
	// The four writers queue on their partner's row (a partner's company
	// creations take turns, each with its commit's fsync), so on a loaded
	// CI machine a creation has waited past the default 2 s lock_timeout
	// and failed with ErrUnavailable: not what this test is about.
	dbs := replicasWith(t, 2, "&lock_timeout=30s")
	ctx := t.Context()
	p, _, err := newService(dbs[0]).CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	const perWriter, writers = 40, 4
	var mu sync.Mutex
	var created []string
	var wg sync.WaitGroup
	for w := range writers {
		svc := newService(dbs[w%2])
		wg.Go(func() {
			for i := range perWriter {
				c, _, err := svc.CreateCompany(ctx, keys.Operator, p.ID, keys.CompanyInput{Name: fmt.Sprintf("c-%d-%d", w, i)})
				if err != nil {
					t.Errorf("CreateCompany: %v", err)
					return
				}
				mu.Lock()
				created = append(created, c.ID)
				mu.Unlock()
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	var seen []string
	after, finished := int64(0), false
	for {
		page, err := dbs[1].ListCompanies(ctx, p.ID, keys.Page{After: after, Limit: 3})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page.Companies {
			seen = append(seen, c.ID)
		}
		if len(page.Companies) > 0 {
			after = page.Last
		}
		if !page.More {
			if finished {
				break
			}
			select {
			case <-done:
				finished = true // one more walk to the end, after the last commit
			default:
			}
		}
	}
	slices.Sort(created)
	sortedSeen := slices.Clone(seen)
	slices.Sort(sortedSeen)
	if !slices.Equal(sortedSeen, created) {
		t.Errorf("the walk saw %d companies (%d distinct), %d were created", len(seen), len(slices.Compact(sortedSeen)), len(created))
	}
}

// Housekeeping on two replicas at once deletes each dead family once, and
// neither fails.
func TestReplicasDeleteFamilies(t *testing.T) {
	dbs := replicas(t, 2)
	ctx := t.Context()
	_, k, err := newService(dbs[0]).CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	const dead = 300
	for range dead {
		seed := tokens.Family{ID: keys.NewID("fam_"), Principal: keys.Principal{KeyID: k.ID},
			CreatedAt: t0, RotatedAt: t0, ExpiresAt: t0.Add(time.Hour), FirstExpiresAt: t0.Add(time.Hour)}
		err := dbs[0].UpdateFamily(ctx, seed.ID, &seed, func(f *tokens.Family) (tokens.Change, error) {
			f.Generation = 1
			return tokens.Change{Write: true}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	total := 0
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for {
				n, err := dbs[i%2].DeleteFamilies(ctx, t0.Add(48*time.Hour), 7)
				if err != nil {
					t.Errorf("DeleteFamilies: %v", err)
					return
				}
				mu.Lock()
				total += n
				mu.Unlock()
				if n == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	if total != dead {
		t.Errorf("housekeeping deleted %d families, want %d", total, dead)
	}
}

// Usage batches from two replicas at once, over the same keys in any
// order: no deadlock fails one, no event is lost or doubled, and each key's
// last use is the latest of all.
func TestReplicasRecordUsage(t *testing.T) {
	dbs := replicas(t, 2)
	ctx := t.Context()
	svc := newService(dbs[0])
	var ids []string
	for i := range 20 {
		_, k, err := svc.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: fmt.Sprintf("p%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, k.ID)
	}
	const batches = 30
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for b := range batches {
				used := map[string]time.Time{}
				for i, id := range ids {
					used[id] = t0.Add(time.Duration(w*batches+b+i) * time.Second)
				}
				ev := keys.AuditEvent{At: t0.Add(time.Duration(b) * time.Millisecond), ActorType: keys.ActorPartner, ActorID: "par",
					Action: "login", TargetType: "key", Target: fmt.Sprintf("w%d-b%d", w, b), Addr: "192.0.2.1", Outcome: keys.OutcomeSuccess}
				if err := dbs[w%2].RecordUsage(ctx, used, []keys.AuditEvent{ev, ev}); err != nil {
					t.Errorf("RecordUsage: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	evs, err := dbs[1].ListAudit(ctx, keys.AuditCursor{At: t0}, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	logins := 0
	for _, e := range evs {
		if e.Action == "login" {
			logins++
		}
	}
	if logins != 4*batches*2 {
		t.Errorf("%d login events, want %d", logins, 4*batches*2)
	}
	ps, err := svc.ListPartners(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		ks, err := dbs[1].ListKeys(ctx, keys.PartnerOwner(p.ID))
		if err != nil || len(ks) != 1 || ks[0].LastUsedAt == nil {
			t.Fatalf("keys of %s: %+v, %v", p.ID, ks, err)
		}
		i := slices.Index(ids, ks[0].ID)
		if want := t0.Add(time.Duration(4*batches-1+i) * time.Second); !ks[0].LastUsedAt.Equal(want) {
			t.Errorf("key %d last used %v, want the latest use written, %v", i, ks[0].LastUsedAt, want)
		}
	}
}

// A usage batch whose COMMIT answer is lost is handed back by the recorder
// with the next batch; whether it had committed or not, each event ends up
// in the audit trail once.
func TestRecordUsageLostCommitAnswer(t *testing.T) {
	for _, committed := range []bool{true, false} {
		t.Run(fmt.Sprintf("committed=%v", committed), func(t *testing.T) {
			db := open(t)
			ctx := t.Context()
			ev := func(target string) keys.AuditEvent {
				return keys.AuditEvent{At: t0, ActorType: keys.ActorAnonymous, Action: "login", TargetType: "key", Target: target,
					Addr: "192.0.2.1", Outcome: keys.OutcomeFailure}
			}
			first := []keys.AuditEvent{ev("a"), ev("a"), ev("b")}
			db.LoseNextUsageCommitAnswer(committed)
			err := db.RecordUsage(ctx, nil, first)
			if !errors.Is(err, keys.ErrUnavailable) {
				t.Fatalf("RecordUsage with its COMMIT answer lost: %v, want ErrUnavailable", err)
			}
			// keys.Recorder puts the failed batch back in front of newer events.
			if err := db.RecordUsage(ctx, nil, append(first, ev("a"), ev("c"))); err != nil {
				t.Fatal(err)
			}
			evs, err := db.ListAudit(ctx, keys.AuditCursor{}, 1_000_000)
			if err != nil {
				t.Fatal(err)
			}
			count := map[string]int{}
			for _, e := range evs {
				count[e.Target]++
			}
			if want := map[string]int{"a": 3, "b": 1, "c": 1}; fmt.Sprint(count) != fmt.Sprint(want) {
				t.Errorf("audit trail holds %v, want %v", count, want)
			}
		})
	}
}

// Housekeeping deletes usage_batches rows older than an hour (those left
// behind by replicas that stopped), on several replicas at once, and keeps
// the recent ones a replica may still need.
func TestHousekeepingDeletesOldUsageBatches(t *testing.T) {
	dbURL, _ := pgtest.Schema(t)
	dbs := []*postgres.DB{openURL(t, dbURL), openURL(t, dbURL)}
	old := time.Now().Add(-2 * time.Hour).UnixMilli()
	pgtest.Exec(t, dbURL, `INSERT INTO usage_batches (id, at) SELECT sha256(i::text::bytea), $1 FROM generate_series(1, 1200) i`, old)
	pgtest.Exec(t, dbURL, `INSERT INTO usage_batches (id, at) VALUES ('\x01', $1)`, time.Now().UnixMilli())
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for range 3 {
				if _, err := dbs[i%2].DeleteFamilies(t.Context(), t0, 500); err != nil {
					t.Errorf("DeleteFamilies: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if n := pgtest.QueryInt(t, dbURL, `SELECT COUNT(*) FROM usage_batches WHERE at = $1`, old); n != 0 {
		t.Errorf("%d usage batches older than an hour left after housekeeping", n)
	}
	if n := pgtest.QueryInt(t, dbURL, `SELECT COUNT(*) FROM usage_batches WHERE id = '\x01'`); n != 1 {
		t.Errorf("housekeeping deleted a recent usage batch")
	}
}

// heardWithin waits for one call of a WatchKeyChanges callback.
func heardWithin(t *testing.T, heard <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-heard:
	case <-time.After(15 * time.Second):
		t.Fatalf("no key change announced within 15 s of %s", what)
	}
}

// watch runs db.WatchKeyChanges until the test ends, announcing on the
// returned channel; it returns once the listener is in place.
func watch(t *testing.T, db *postgres.DB, changed func()) <-chan struct{} {
	t.Helper()
	heard := make(chan struct{}, 64)
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		db.WatchKeyChanges(ctx, func() {
			if changed != nil {
				changed()
			}
			heard <- struct{}{}
		})
	}()
	t.Cleanup(func() { stop(); <-done })
	heardWithin(t, heard, "starting to listen")
	return heard
}

// One replica listens; revocations and disablings committed through the
// other are announced to it, and so is every reconnection of its
// listening connection (pg_terminate_backend), which follows by itself.
func TestReplicasAnnounceKeyChanges(t *testing.T) {
	dbURL, schema := pgtest.Schema(t)
	a, b := openURL(t, dbURL), openURL(t, dbURL)
	heard := watch(t, a, nil)
	ctx := t.Context()
	svc := newService(b)
	p, k, err := svc.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	_, co, err := svc.CreateCompany(ctx, keys.Operator, p.ID, keys.CompanyInput{Name: "Globex"})
	if err != nil {
		t.Fatal(err)
	}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		heardWithin(t, heard, what)
	}
	must("a revocation through the other replica", svc.RevokeKey(ctx, keys.Operator, keys.PartnerOwner(p.ID), k.ID))
	must("a company disabled through the other replica", svc.DisableCompany(ctx, keys.Operator, p.ID, co.Owner.CompanyID()))
	must("a partner disabled through the other replica", svc.DisablePartner(ctx, keys.Operator, p.ID))

	listener := `application_name = 'keygate key changes' AND query = 'LISTEN "keygate_keys_` + schema + `"'`
	if n := pgtest.QueryInt(t, dbURL, `WITH l AS MATERIALIZED (SELECT pid FROM pg_stat_activity WHERE `+listener+`)
		SELECT COUNT(*) FROM l WHERE pg_terminate_backend(l.pid)`); n != 1 {
		t.Fatalf("terminated %d listening connections, want 1", n)
	}
	heardWithin(t, heard, "the listening connection's end (the reconnection's call)")
	p2, _, err := svc.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "Bolt"})
	if err != nil {
		t.Fatal(err)
	}
	must("a partner disabled after the reconnection", svc.DisablePartner(ctx, keys.Operator, p2.ID))
}

// A revocation through one replica reaches the other's key cache through
// the notification alone: the listening replica's clock stands still, so
// neither its epoch check nor its entries' lifetime can have run out.
func TestReplicasCacheHearsRevocation(t *testing.T) {
	dbs := replicas(t, 2)
	ctx := t.Context()
	frozen := func() time.Time { return t0 }
	svcA := keys.NewService(dbs[0], nil, frozen, slog.New(slog.DiscardHandler))
	b := newService(dbs[1])
	p, k, err := b.CreatePartner(ctx, keys.Operator, keys.PartnerInput{Name: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	claims := keys.PrincipalOf(k.ID, keys.PartnerOwner(p.ID), "")
	if _, err := svcA.ActivePrincipal(ctx, claims); err != nil {
		t.Fatal(err)
	}
	heard := make(chan struct{}, 64)
	announcing := &announcer{DB: dbs[0], heard: heard}
	svcA2 := keys.NewService(announcing, nil, frozen, slog.New(slog.DiscardHandler))
	watchCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { svcA2.WatchChanges(watchCtx); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	heardWithin(t, heard, "starting to listen")
	if _, err := svcA2.ActivePrincipal(ctx, claims); err != nil {
		t.Fatal(err)
	}
	if err := b.RevokeKey(ctx, keys.Operator, keys.PartnerOwner(p.ID), k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := svcA.ActivePrincipal(ctx, claims); err != nil {
		t.Fatalf("a replica without the notification, its clock standing: %v (want the stale hit that shows the clock stands)", err)
	}
	heardWithin(t, heard, "the revocation")
	if _, err := svcA2.ActivePrincipal(ctx, claims); !errors.Is(err, keys.ErrInactive) {
		t.Errorf("token check after the notification: %v, want ErrInactive", err)
	}
}

// announcer is the store, telling the test each time its feed has called
// the cache.
type announcer struct {
	*postgres.DB
	heard chan struct{}
}

func (a *announcer) WatchKeyChanges(ctx context.Context, changed func()) {
	a.DB.WatchKeyChanges(ctx, func() { changed(); a.heard <- struct{}{} })
}
