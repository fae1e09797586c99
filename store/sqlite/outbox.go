package sqlite

import (
	"context"
	"database/sql"
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

var _ store.OutboxPruner = (*Store)(nil)

// PruneOutbox deletes up to limit published events created before before,
// oldest first. The outbox is walked by id (its rowid) past the events not
// yet published, so no index is added to the table every claim writes; ids
// follow creation, so the walk stops after a chunk's worth of old events.
func (s *Store) PruneOutbox(ctx context.Context, before time.Time, limit int) (int, error) {
	var n int64
	err := s.writeTx(ctx, "prune outbox", func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE id IN (
			SELECT id FROM (SELECT id, created_at FROM outbox WHERE published_at IS NOT NULL ORDER BY id LIMIT ?)
			WHERE created_at < ?)`, clampLimit(limit), micros(before))
		if err != nil {
			return wrap("prune outbox", err)
		}
		n, err = r.RowsAffected()
		return wrapIf("prune outbox", err)
	})
	return int(n), err
}
