package postgres_test

import (
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
	dbURL, _ := pgtest.Schema(t)
	out := make([]*postgres.DB, n)
	for i := range out {
		out[i] = openURL(t, dbURL)
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
	_, k, err := svc.CreatePartner(t.Context(), keys.Operator, "Acme")
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

// A key revoked through one replica is refused by the other's cached
// lookups within keys' 10 ms epoch check, and by its refreshes at once.
func TestReplicasSeeRevocation(t *testing.T) {
	dbs := replicas(t, 2)
	a, b := newService(dbs[0]), newService(dbs[1])
	ctx := t.Context()
	p, k, err := b.CreatePartner(ctx, keys.Operator, "Acme")
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
	// A's key cache: the bound is 10 ms after the revocation committed.
	time.Sleep(10 * time.Millisecond)
	if _, err := a.Authenticate(ctx, k.APIKey.Reveal()); err == nil {
		t.Errorf("replica A still accepts a key replica B revoked 10 ms ago")
	}
}

// Companies created through two replicas while a client pages through the
// list: the walk sees every one exactly once.
func TestReplicasListCompaniesWhileAdding(t *testing.T) {
	dbs := replicas(t, 2)
	ctx := t.Context()
	p, _, err := newService(dbs[0]).CreatePartner(ctx, keys.Operator, "Acme")
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
	_, k, err := newService(dbs[0]).CreatePartner(ctx, keys.Operator, "Acme")
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
		_, k, err := svc.CreatePartner(ctx, keys.Operator, fmt.Sprintf("p%d", i))
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
