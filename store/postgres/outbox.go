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
