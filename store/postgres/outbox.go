package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coupond/coupond/store"
)

// PendingEvents returns up to limit (default 100, at most 1000) unpublished
// outbox rows, oldest first. It reads the primary: the relay marks there,
// and a lagging replica would hand it events it has just published.
func (s *Store) PendingEvents(ctx context.Context, limit int) ([]store.Event, error) {
	rows, err := s.primary.Query(ctx, `SELECT id, type, aggregate_id, payload, created_at FROM outbox
		WHERE published_at IS NULL ORDER BY id LIMIT $1`, clampLimit(limit))
	if err != nil {
		return nil, wrap("pending events", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Event, error) {
		var e store.Event
		var payload string
		err := row.Scan(&e.ID, &e.Type, &e.AggregateID, &payload, &e.CreatedAt)
		e.Payload, e.CreatedAt = []byte(payload), utc(e.CreatedAt)
		return e, err
	})
	if err != nil {
		return nil, wrap("pending events", err)
	}
	return out, nil
}

// MarkPublished records that the events were published at at. Marking an
// event again keeps its first publication time; unknown ids are ignored.
func (s *Store) MarkPublished(ctx context.Context, ids []int64, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.primary.Exec(ctx, `UPDATE outbox SET published_at = $1
		WHERE id = ANY($2::bigint[]) AND published_at IS NULL`, at, ids)
	if err != nil {
		return wrap("mark events published", err)
	}
	return nil
}

var _ store.OutboxPruner = (*Store)(nil)

// PruneOutbox deletes up to limit published events created before before
// from the outbox's default partition. The daily partitions are dropped
// whole by MaintainPartitions once the retention has passed and they hold
// no unpublished event; the default takes only events of days no partition
// covered, and what it holds can only be deleted.
func (s *Store) PruneOutbox(ctx context.Context, before time.Time, limit int) (int, error) {
	tag, err := s.primary.Exec(ctx, `DELETE FROM outbox_default WHERE ctid = ANY (ARRAY(
		SELECT ctid FROM outbox_default WHERE created_at < $1 AND published_at IS NOT NULL LIMIT $2))`,
		before, clampLimit(limit))
	if err != nil {
		return 0, wrap("prune outbox", err)
	}
	return int(tag.RowsAffected()), nil
}
