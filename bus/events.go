// Package bus carries coupond's events: rows of the store's outbox relayed to
// NATS JetStream, embedded in-process by default or external by URL. An event
// is published at least once; the outbox id is its JetStream message id, so
// JetStream drops a re-publication inside its duplicate window and consumers
// drop the rest by id.
package bus

import (
	"encoding/json"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Event types. The subject of an event is SubjectPrefix + its type.
const (
	TypeBatchPublished = "batch.published"
	TypeBatchPaused    = "batch.paused"
	TypeBatchResumed   = "batch.resumed"
	TypeBatchEnded     = "batch.ended"
	TypeBatchUpdated   = "batch.updated"
	TypeClaimCreated   = "claim.created"
)

// SubjectPrefix starts the subject of every event.
const SubjectPrefix = "coupond."

// Envelope is the JSON body of every message on the bus.
type Envelope struct {
	ID          int64           `json:"id"`           // outbox id; also the Nats-Msg-Id header
	Type        string          `json:"type"`         // e.g. claim.created
	AggregateID string          `json:"aggregate_id"` // the batch or claim the event is about
	OccurredAt  time.Time       `json:"occurred_at"`  // UTC
	Data        json.RawMessage `json:"data"`         // one of the payloads below

	// Trace is the span in which the event was caused, when known. Publish
	// sends it as the message's W3C traceparent header, so a consumer's
	// span continues that trace; without it the publishing context's span
	// is sent. It is not part of the JSON.
	Trace trace.SpanContext `json:"-"`
}

// Subject returns the NATS subject of the envelope.
func (e *Envelope) Subject() string { return SubjectPrefix + e.Type }

// BatchStatusChanged is the data of batch.published, batch.paused,
// batch.resumed and batch.ended.
type BatchStatusChanged struct {
	BatchID        string    `json:"batch_id"`
	MerchantID     string    `json:"merchant_id,omitempty"`
	Status         string    `json:"status"`      // the new status
	From           string    `json:"from_status"` // the status before
	TotalQuantity  int64     `json:"total_quantity"`
	GeneratedCount int64     `json:"generated_count"`
	At             time.Time `json:"at"`
}

// BatchUpdated is the data of batch.updated: the configuration of a draft
// was replaced by an edit. The batch itself (GET /v1/batches/{id}) has the
// new configuration.
type BatchUpdated struct {
	BatchID    string    `json:"batch_id"`
	MerchantID string    `json:"merchant_id,omitempty"`
	Version    int64     `json:"version"` // the batch's version after the edit
	At         time.Time `json:"at"`
}

// ClaimCreated is the data of claim.created.
type ClaimCreated struct {
	ClaimID    string    `json:"claim_id"`
	BatchID    string    `json:"batch_id"`
	MerchantID string    `json:"merchant_id,omitempty"`
	UserID     string    `json:"user_id"`
	Code       string    `json:"code"`
	Amount     int64     `json:"amount"`
	Platform   string    `json:"platform,omitempty"`
	Channel    string    `json:"channel,omitempty"`
	ValidFrom  time.Time `json:"valid_from"`
	ValidTo    time.Time `json:"valid_to"`
	ClaimedAt  time.Time `json:"claimed_at"`
}

// Event types of product tagging.
const (
	TypeBatchStockOut      = "batch.stock_out"
	TypeProductTagsChanged = "product.tags_changed"
)

// BatchStockOut is the data of batch.stock_out: the batch's last code was
// claimed. It is published once per batch.
type BatchStockOut struct {
	BatchID       string    `json:"batch_id"`
	MerchantID    string    `json:"merchant_id,omitempty"`
	TotalQuantity int64     `json:"total_quantity"`
	At            time.Time `json:"at"`
}

// ProductTagsChanged is the data of product.tags_changed: a batch's tag
// appeared on, or disappeared from, the products, categories and merchants
// its rules name.
type ProductTagsChanged struct {
	BatchID    string    `json:"batch_id"`
	MerchantID string    `json:"merchant_id,omitempty"`
	Tagged     bool      `json:"tagged"` // true: the tag is on; false: removed
	Products   []string  `json:"products,omitempty"`
	Categories []string  `json:"categories,omitempty"`
	Merchants  []string  `json:"merchants,omitempty"`
	Reason     string    `json:"reason"` // window_open, window_closed, stock_out, paused, resumed, ended, published, sync
	At         time.Time `json:"at"`
}
