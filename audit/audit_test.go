package audit_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite"

	"github.com/coupond/coupond/audit"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/engine/memory"
	"github.com/coupond/coupond/engine/redis"
	"github.com/coupond/coupond/internal/backendtest"
	"github.com/coupond/coupond/service"
	"github.com/coupond/coupond/store"
	"github.com/coupond/coupond/store/postgres"
	"github.com/coupond/coupond/store/sqlite"
)

// deployment is a store, an engine and a service over them, with a way to
// break the store behind the service's back.
type deployment struct {
	store  store.Store
	engine engine.Engine
	svc    *service.Service
	exec   func(t *testing.T, query string) // raw SQL on the store's database, constraints off where the store allows
}

func embedded(t *testing.T) *deployment {
	path := filepath.Join(t.TempDir(), "coupond.db")
	st, err := sqlite.Open(t.Context(), sqlite.Config{Path: path, Synchronous: "normal"})
	if err != nil {
		t.Fatal(err)
	}
	d := &deployment{store: st, engine: memory.New()}
	d.exec = func(t *testing.T, q string) {
		// A connection of its own: foreign keys are off unless a
		// connection turns them on, as the store's do.
		db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return d.start(t)
}

func production(t *testing.T) *deployment {
	url := backendtest.PostgresSchema(t)
	st, err := postgres.Open(t.Context(), postgres.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	srv := backendtest.RedisServer(t)
	eng, err := redis.Open(t.Context(), redis.Config{URL: "redis://" + srv.Addr() + "/0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	d := &deployment{store: st, engine: eng}
	d.exec = func(t *testing.T, q string) {
		conn, err := pgx.Connect(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return d.start(t)
}

func (d *deployment) start(t *testing.T) *deployment {
	d.svc = service.New(service.Config{Store: d.store, Engine: d.engine})
	if err := d.svc.LoadEngine(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.svc.Close()
		_ = d.store.Close()
	})
	return d
}

// sale publishes a batch of total codes, limit per user, and claims n of
// them for users u0, u0, u1, u1, …
func (d *deployment) sale(t *testing.T, total int64, limit, n int) (*service.BatchView, []*coupon.Claim) {
	t.Helper()
	b, err := d.svc.CreateBatch(t.Context(), coupon.BatchSpec{
		Name: "audit", TotalQuantity: total, PerUserLimit: limit,
		Validity: coupon.Validity{Days: 7}, Amount: coupon.AmountSpec{Type: coupon.AmountFixed, Value: 500},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.svc.Transition(t.Context(), b.ID, coupon.Publish); err != nil {
		t.Fatal(err)
	}
	var claims []*coupon.Claim
	for i := range n {
		c, _, err := d.svc.Claim(t.Context(), service.ClaimRequest{BatchID: b.ID, Claimant: coupon.Claimant{UserID: "u" + string(rune('0'+i/2))}})
		if err != nil {
			t.Fatal(err)
		}
		claims = append(claims, c)
	}
	return b, claims
}

func run(t *testing.T, d *deployment, at time.Time) audit.Report {
	t.Helper()
	r, err := audit.Run(t.Context(), audit.Config{Store: d.store, Engine: d.engine, Now: func() time.Time { return at }, Recheck: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// found returns the violations of one invariant.
func found(r audit.Report, invariant string) []store.Violation {
	var out []store.Violation
	for _, v := range r.Violations {
		if v.Invariant == invariant {
			out = append(out, v)
		}
	}
	return out
}

func each(t *testing.T, test func(t *testing.T, d *deployment)) {
	t.Run("sqlite+memory", func(t *testing.T) { t.Parallel(); test(t, embedded(t)) })
	t.Run("postgres+redis", func(t *testing.T) { t.Parallel(); test(t, production(t)) })
}

// A healthy deployment audits clean; the same deployment with its store
// broken behind the service's back reports each breach with its ids.
func TestAuditFindsBrokenStoreInvariants(t *testing.T) {
	t.Parallel()
	each(t, func(t *testing.T, d *deployment) {
		b, claims := d.sale(t, 10, 2, 4) // u0 ×2, u1 ×2
		now := time.Now().UTC()
		if r := run(t, d, now); !r.OK() || r.Batches != 1 {
			t.Fatalf("a healthy deployment: %+v", r)
		}

		// No outbox relay runs here: an hour on, every event is late.
		if got := found(run(t, d, now.Add(time.Hour)), store.InvariantOutboxUnpublished); len(got) == 0 {
			t.Fatal("unpublished events an hour old are not reported")
		}

		// The batch's bounds lowered under its claims and codes.
		d.exec(t, "UPDATE batches SET total_quantity = 3, generated_count = 3, per_user_limit = 1 WHERE id = '"+b.ID+"'")
		r := run(t, d, now)
		if got := found(r, store.InvariantOverTotal); len(got) != 1 || got[0].BatchID != b.ID {
			t.Fatalf("over_total: %+v", got)
		}
		if got := found(r, store.InvariantGeneratedOverTotal); len(got) != 1 || got[0].BatchID != b.ID {
			t.Fatalf("generated_over_total: %+v", got)
		}
		users := []string{}
		for _, v := range found(r, store.InvariantOverUserLimit) {
			users = append(users, v.IDs...)
		}
		slices.Sort(users)
		if !slices.Equal(users, []string{"u0", "u1"}) {
			t.Fatalf("over_user_limit names %v, want u0 and u1", users)
		}

		// A claim whose code is not one of its batch's.
		if _, ok := d.store.(*postgres.Store); ok {
			d.exec(t, "ALTER TABLE claims DROP CONSTRAINT claims_code_fk")
		}
		d.exec(t, "UPDATE claims SET code = 'NOT-A-CODE' WHERE id = '"+claims[0].ID+"'")
		if got := found(run(t, d, now), store.InvariantCodeNotInBatch); len(got) != 1 || got[0].IDs[0] != claims[0].ID {
			t.Fatalf("code_not_in_batch: %+v", got)
		}
	})
}

// One code in two claims: only PostgreSQL lets a test drop the unique
// constraint that forbids it.
func TestAuditFindsACodeInTwoClaims(t *testing.T) {
	t.Parallel()
	d := production(t)
	_, claims := d.sale(t, 10, 5, 2)
	d.exec(t, "ALTER TABLE claims DROP CONSTRAINT claims_code")
	d.exec(t, "UPDATE claims SET code = '"+claims[0].Code+"' WHERE id = '"+claims[1].ID+"'")
	got := found(run(t, d, time.Now().UTC()), store.InvariantCodeTwice)
	if len(got) != 1 || got[0].IDs[0] != claims[0].Code {
		t.Fatalf("code_twice: %+v", got)
	}
}

// The engine checked against the store: a claim undone in the engine that
// the store holds, a claim handed out and never stored.
func TestAuditFindsEngineDisagreeing(t *testing.T) {
	t.Parallel()
	each(t, func(t *testing.T, d *deployment) {
		b, claims := d.sale(t, 10, 5, 2)
		now := time.Now().UTC()

		// The engine forgets a claim the store holds.
		c := claims[0]
		if err := d.engine.Undo(t.Context(), engine.UndoParams{BatchID: b.ID, UserID: c.UserID, Code: c.Code, Amount: c.Amount, Seq: c.UserSeq}); err != nil {
			t.Fatal(err)
		}
		if got := found(run(t, d, now), audit.InvariantEngineBehind); len(got) != 1 || got[0].BatchID != b.ID {
			t.Fatalf("engine_behind: %+v", got)
		}

		// A claim the engine handed out an hour ago, never stored nor returned.
		res, err := d.engine.Claim(t.Context(), engine.ClaimParams{BatchID: b.ID, UserID: "ghost", ClaimID: "ghost-claim", At: now.Add(-time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if res.Code == "" {
			t.Fatalf("engine claim: %+v", res)
		}
		got := found(run(t, d, now), audit.InvariantPendingStale)
		if len(got) != 1 || got[0].IDs[0] != "ghost-claim" {
			t.Fatalf("pending_stale: %+v", got)
		}
	})
}

// A reservation past its timeout that nothing resolved, and a pool that
// does not add up to the codes loaded.
func TestAuditFindsOverdueReservationsAndBrokenPools(t *testing.T) {
	t.Parallel()
	each(t, func(t *testing.T, d *deployment) {
		b, claims := d.sale(t, 10, 5, 1)
		now := time.Now().UTC()
		r, _, err := d.svc.Reserve(t.Context(), service.ReserveRequest{OrderID: "o-1", UserID: claims[0].UserID,
			Cart: coupon.Cart{Items: []coupon.CartItem{{ID: "a", ProductID: "p-a", UnitPrice: 2000, Quantity: 1}}}, ClaimIDs: []string{claims[0].ID}})
		if err != nil {
			t.Fatal(err)
		}
		if got := found(run(t, d, now), store.InvariantReservationOverdue); len(got) != 0 {
			t.Fatalf("a fresh reservation is reported: %+v", got)
		}
		got := found(run(t, d, r.ExpiresAt.Add(audit.DefaultGrace+time.Minute)), store.InvariantReservationOverdue)
		if len(got) != 1 || got[0].IDs[0] != r.ID {
			t.Fatalf("reservation_overdue: %+v", got)
		}

		// The engine told it loaded ten codes while its pool holds two.
		snap := engine.Snapshot{Batch: engine.BatchState{BatchID: b.ID, Active: true, PerUserLimit: 5}, LoadedSeq: 10,
			Pool: []engine.PoolCode{{Code: "X2", Amount: 500}, {Code: "X3", Amount: 500}}}
		if err := d.engine.Rebuild(t.Context(), snap); err != nil {
			t.Fatal(err)
		}
		if got := found(run(t, d, now), audit.InvariantEnginePool); len(got) != 1 || got[0].BatchID != b.ID {
			t.Fatalf("engine_pool: %+v", got)
		}
	})
}
