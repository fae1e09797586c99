package sqlite

import (
	"context"
	"encoding/json"
	"time"

	"github.com/coupond/coupond/store"
)

// PendingEvents returns up to limit (default 100, at most 1000) unpublished
// outbox rows, oldest first.
func (s *Store) PendingEvents(ctx context.Context, limit int) ([]store.Event, error) {
	rows, err := s.reader.QueryContext(ctx, `SELECT id, type, aggregate_id, payload, created_at FROM outbox
		WHERE published_at IS NULL ORDER BY id LIMIT ?`, clampLimit(limit))
	if err != nil {
		return nil, wrap("pending events", err)
	}
	var out []store.Event
	err = eachRow(rows, func() error {
		var e store.Event
		var payload string
		var createdAt int64
		if err := rows.Scan(&e.ID, &e.Type, &e.AggregateID, &payload, &createdAt); err != nil {
			return err
		}
		e.Payload, e.CreatedAt = json.RawMessage(payload), fromMicros(createdAt)
		out = append(out, e)
		return nil
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
	_, err := s.writer.ExecContext(ctx, `UPDATE outbox SET published_at = ?
		WHERE published_at IS NULL AND id IN (SELECT value FROM json_each(?))`, micros(at), jsonInts(ids))
	if err != nil {
		return wrap("mark events published", err)
	}
	return nil
}
