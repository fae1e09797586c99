package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coupond/coupond/store"
)

// Tables partitioned by range of a time (migrations 00008 and 00010). Each
// has a DEFAULT partition for rows no partition covers, monthly or daily
// partitions named <table>_y2026m11 or <table>_y2026m11d26, and, for the
// tables converted from plain ones, one partition <table>_before_y…
// holding every row before the day of the conversion.
//
// A partition is made as a plain table and ATTACHed: that locks the parent
// in SHARE UPDATE EXCLUSIVE mode, which blocks none of its readers and
// writers (CREATE TABLE … PARTITION OF would lock it ACCESS EXCLUSIVE, and
// the outbox is written by every claim). Only the default partition is
// locked while PostgreSQL checks that it holds no row of the new range —
// which is why a range whose rows are in the default already is skipped.
// Dropping a partition needs the parent's ACCESS EXCLUSIVE lock for a
// moment (DETACH; CONCURRENTLY is not allowed beside a default partition):
// it is taken with a short lock timeout, so that writers queue behind it
// for at most that long; a drop that times out is tried on the next pass.

// timeTable is one table partitioned by time.
type timeTable struct {
	parent string
	key    string // the partition key column
	daily  bool   // else monthly
	// keep, if set, returns a condition on a partition's rows (and its
	// arguments) any of which keeps the partition from being dropped
	// though its retention has passed; cutoff is the retention's.
	keep func(cutoff time.Time) (string, []any)
}

var (
	claimsArchive          = timeTable{parent: "claims_archive", key: "claimed_at"}
	redemptionsArchive     = timeTable{parent: "redemptions_archive", key: "reserved_at"}
	redemptionLinesArchive = timeTable{parent: "redemption_claims_archive", key: "reserved_at"}
	// An event not yet published must stay whatever its age.
	outboxTable = timeTable{parent: "outbox", key: "created_at", daily: true,
		keep: func(time.Time) (string, []any) { return "published_at IS NULL", nil }}
	// A record made within the dedupe window must stay, however old its
	// event: a redelivery of that event may still come.
	statsEventsTable = timeTable{parent: "stats_events", key: "occurred_at", daily: true,
		keep: func(cutoff time.Time) (string, []any) { return "recorded_at >= $1", []any{cutoff} }}
)

// Lock timeouts of partition changes.
const (
	attachLockTimeout = "2s"    // the parent is not blocked; the default partition is
	dropLockTimeout   = "500ms" // the parent's writers wait behind it
)

// MaintainPartitions makes and drops the partitions of every table
// partitioned by time: the archives' months from p.From's through p.Ahead
// months after p.Now's, dropped past p.DropBefore; the outbox's and the
// counted events' days from p.Now's through p.DaysAhead after it, dropped
// past their cutoffs unless they still hold rows their policy keeps.
func (s *Store) MaintainPartitions(ctx context.Context, p store.MaintainPartitions) (store.PartitionReport, error) {
	var rep store.PartitionReport
	now := p.Now.UTC()
	from := monthOf(now)
	if !p.From.IsZero() && monthOf(p.From).Before(from) {
		from = monthOf(p.From)
	}
	through := monthOf(now).AddDate(0, p.Ahead, 0)
	var errs []error
	for _, t := range []timeTable{claimsArchive, redemptionsArchive, redemptionLinesArchive} {
		errs = append(errs, s.maintain(ctx, t, from, through, p.DropBefore, &rep))
	}
	today := dayOf(now)
	last := today.AddDate(0, 0, max(p.DaysAhead, 0))
	errs = append(errs, s.maintain(ctx, outboxTable, today, last, p.OutboxDropBefore, &rep))
	errs = append(errs, s.maintain(ctx, statsEventsTable, today, last, p.EventsDropBefore, &rep))
	return rep, errors.Join(errs...)
}

// ArchivePartitions lists the claims archive's monthly partitions, oldest
// first (the default partition is not listed).
func (s *Store) ArchivePartitions(ctx context.Context) ([]store.Partition, error) {
	return s.partitions(ctx, claimsArchive)
}

// Partitions lists the partitions of a table partitioned by time, oldest
// first, without its default partition; a partition of every row before a
// time has a zero From.
func (s *Store) Partitions(ctx context.Context, table string) ([]store.Partition, error) {
	for _, t := range []timeTable{claimsArchive, redemptionsArchive, redemptionLinesArchive, outboxTable, statsEventsTable} {
		if t.parent == table {
			return s.partitions(ctx, t)
		}
	}
	return nil, fmt.Errorf("postgres: %s is not partitioned by time", table)
}

// maintain makes t's partitions for the periods from through last and
// drops those ending at or before dropBefore (zero: none), recording what
// it did in rep. Each change is its own transaction: a pass that fails
// half-way leaves every change whole, and the next pass goes on.
func (s *Store) maintain(ctx context.Context, t timeTable, from, last, dropBefore time.Time, rep *store.PartitionReport) error {
	existing, err := s.partitions(ctx, t)
	if err != nil {
		return err
	}
	var errs []error
	for start := from; !start.After(last); start = t.next(start) {
		end := t.next(start)
		if !dropBefore.IsZero() && !end.After(dropBefore) {
			continue // would be dropped at once
		}
		if covered(existing, start, end) {
			continue
		}
		name := t.name(start)
		var inDefault bool
		err := s.primary.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+pgx.Identifier{t.parent + "_default"}.Sanitize()+
			` WHERE `+t.key+` >= $1 AND `+t.key+` < $2)`, start, end).Scan(&inDefault)
		if err != nil {
			errs = append(errs, wrap(t.parent+" partitions: check default", err))
			continue
		}
		if inDefault {
			rep.Skipped = append(rep.Skipped, name)
			continue
		}
		if err := s.attachPartition(ctx, t, name, start, end); err != nil {
			errs = append(errs, err)
			continue
		}
		rep.Created = append(rep.Created, name)
	}
	if !dropBefore.IsZero() {
		for _, pt := range existing {
			if pt.To.After(dropBefore) {
				continue
			}
			dropped, err := s.dropPartition(ctx, t, pt.Name, dropBefore)
			switch {
			case err != nil:
				errs = append(errs, err)
			case dropped:
				rep.Dropped = append(rep.Dropped, pt.Name)
			default:
				rep.Kept = append(rep.Kept, pt.Name)
			}
		}
	}
	return errors.Join(errs...)
}

// attachPartition makes the partition name of t for [start, end).
func (s *Store) attachPartition(ctx context.Context, t timeTable, name string, start, end time.Time) error {
	op := t.parent + " partitions: create " + name
	parent, part := pgx.Identifier{t.parent}.Sanitize(), pgx.Identifier{name}.Sanitize()
	return inTx(ctx, s.primary, pgx.TxOptions{}, op, func(tx pgx.Tx) error {
		for _, q := range []string{
			`SET LOCAL lock_timeout = '` + attachLockTimeout + `'`,
			`CREATE TABLE ` + part + ` (LIKE ` + parent + `)`,
			// Bounds are times this package formats; DDL takes no parameters.
			`ALTER TABLE ` + parent + ` ATTACH PARTITION ` + part + ` FOR VALUES FROM ('` +
				start.Format(time.RFC3339) + `') TO ('` + end.Format(time.RFC3339) + `')`,
		} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return wrap(op, err)
			}
		}
		return nil
	})
}

// dropPartition detaches and drops the partition name of t, unless it holds
// a row that t's policy keeps (dropped false, no error). The parent is
// locked before the partition, in the order every statement on the table
// takes them, and the check runs under both locks, so no row can arrive
// between the check and the drop.
func (s *Store) dropPartition(ctx context.Context, t timeTable, name string, cutoff time.Time) (bool, error) {
	op := t.parent + " partitions: drop " + name
	parent, part := pgx.Identifier{t.parent}.Sanitize(), pgx.Identifier{name}.Sanitize()
	dropped := false
	err := inTx(ctx, s.primary, pgx.TxOptions{}, op, func(tx pgx.Tx) error {
		for _, q := range []string{
			`SET LOCAL lock_timeout = '` + dropLockTimeout + `'`,
			`LOCK TABLE ONLY ` + parent + ` IN ACCESS EXCLUSIVE MODE`,
			`LOCK TABLE ` + part + ` IN ACCESS EXCLUSIVE MODE`,
		} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return wrap(op, err)
			}
		}
		if t.keep != nil {
			cond, args := t.keep(cutoff)
			var held bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+part+` WHERE `+cond+`)`, args...).Scan(&held); err != nil {
				return wrap(op, err)
			}
			if held {
				return nil
			}
		}
		for _, q := range []string{`ALTER TABLE ` + parent + ` DETACH PARTITION ` + part, `DROP TABLE ` + part} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return wrap(op, err)
			}
		}
		dropped = true
		return nil
	})
	return dropped, err
}

// partitions lists t's partitions from the catalogue, oldest first, by
// their names; the default partition and tables not named by this package
// are left out.
func (s *Store) partitions(ctx context.Context, t timeTable) ([]store.Partition, error) {
	rows, err := s.primary.Query(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = $1::regclass`, pgx.Identifier{t.parent}.Sanitize())
	if err != nil {
		return nil, wrap(t.parent+" partitions", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, wrap(t.parent+" partitions", err)
	}
	var out []store.Partition
	for _, n := range names {
		if p, ok := t.parse(n); ok {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b store.Partition) int { return a.To.Compare(b.To) })
	return out, nil
}

// start returns the first instant of at's period (UTC).
func (t timeTable) start(at time.Time) time.Time {
	if t.daily {
		return dayOf(at)
	}
	return monthOf(at)
}

// next returns the start of the period after the one starting at start.
func (t timeTable) next(start time.Time) time.Time {
	if t.daily {
		return start.AddDate(0, 0, 1)
	}
	return start.AddDate(0, 1, 0)
}

func (t timeTable) layout() string {
	if t.daily {
		return "y2006m01d02"
	}
	return "y2006m01"
}

// name names the partition of the period starting at start.
func (t timeTable) name(start time.Time) string { return t.parent + "_" + start.Format(t.layout()) }

// parse reads a partition's range from its name.
func (t timeTable) parse(name string) (store.Partition, bool) {
	rest, ok := strings.CutPrefix(name, t.parent+"_")
	if !ok {
		return store.Partition{}, false
	}
	if before, ok := strings.CutPrefix(rest, "before_"); ok {
		to, err := time.Parse("y2006m01d02", before)
		if err != nil {
			return store.Partition{}, false
		}
		return store.Partition{Name: name, To: to}, true
	}
	start, err := time.Parse(t.layout(), rest)
	if err != nil || !t.start(start).Equal(start) {
		return store.Partition{}, false
	}
	return store.Partition{Name: name, From: start, To: t.next(start)}, true
}

// covered reports whether an existing partition overlaps [start, end).
func covered(ps []store.Partition, start, end time.Time) bool {
	for _, p := range ps {
		if start.Before(p.To) && (p.From.IsZero() || p.From.Before(end)) {
			return true
		}
	}
	return false
}

func monthOf(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

func dayOf(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}
