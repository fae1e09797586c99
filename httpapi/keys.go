package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/coupond/coupond/auth"
	"github.com/coupond/coupond/service"
)

// KeyBody is an API key, without its secret.
type KeyBody struct {
	ID                string    `json:"id"`
	Name              string    `json:"name,omitempty"`
	Role              string    `json:"role" enum:"admin,operator,merchant,app"`
	MerchantID        string    `json:"merchant_id,omitempty" doc:"the merchant a merchant key acts for"`
	CreatedAt         time.Time `json:"created_at"`
	RotatedAt         time.Time `json:"rotated_at,omitzero"`
	RevokedAt         time.Time `json:"revoked_at,omitzero" doc:"set once the key is revoked: it authenticates nothing since"`
	PreviousExpiresAt time.Time `json:"previous_expires_at,omitzero" doc:"until when the secret before the last rotation still works"`
}

// IssuedKeyBody is a key with its secret, shown once.
type IssuedKeyBody struct {
	KeyBody
	Secret string `json:"secret" doc:"the key's secret: sign requests with it (docs/access.md). Shown once; only its hash is stored"`
	Token  string `json:"token" doc:"the bearer token of the key, id.secret (app keys sign instead)"`
}

// NewKeyBody asks for an API key.
type NewKeyBody struct {
	Name       string `json:"name,omitempty" maxLength:"200" doc:"what the key is for"`
	Role       string `json:"role" enum:"admin,operator,merchant,app" doc:"admin: everything; operator: batches across merchants; merchant: its own merchant's batches, claims and stats; app: client-facing calls, signed"`
	MerchantID string `json:"merchant_id,omitempty" maxLength:"128" doc:"required for, and only for, the merchant role"`
}

// RotateKeyBody rotates a key's secret.
type RotateKeyBody struct {
	GraceSeconds int `json:"grace_seconds,omitempty" minimum:"0" maximum:"604800" doc:"how long the previous secret keeps working; 0: it stops at once"`
}

// KeyList is one page of keys.
type KeyList struct {
	Items      []KeyBody `json:"items"`
	NextCursor string    `json:"next_cursor,omitempty" doc:"pass as cursor for the next page; absent on the last page"`
}

func keyBody(k *auth.Key) KeyBody {
	return KeyBody{ID: k.ID, Name: k.Name, Role: string(k.Role), MerchantID: k.MerchantID, CreatedAt: k.CreatedAt,
		RotatedAt: k.RotatedAt, RevokedAt: k.RevokedAt, PreviousExpiresAt: k.PreviousExpiresAt}
}

func issuedBody(k *service.IssuedKey) *IssuedKeyBody {
	return &IssuedKeyBody{KeyBody: keyBody(k.Key), Secret: k.Secret, Token: k.Token}
}

type keyIDInput struct {
	ID string `path:"id" maxLength:"64" doc:"key id"`
}

func (h *handlers) registerKeys(api huma.API) {
	tags := []string{"keys"}
	huma.Register(api, huma.Operation{
		OperationID: "create-key", Method: http.MethodPost, Path: "/v1/keys", Tags: tags,
		Summary:       "Create an API key",
		Description:   "Makes a key with a role. Its secret is in the answer, once: the server keeps only its hash.",
		DefaultStatus: http.StatusCreated, MaxBodyBytes: maxClaimBody,
	}, func(ctx context.Context, in *struct{ Body NewKeyBody }) (*struct{ Body *IssuedKeyBody }, error) {
		k, err := h.svc.CreateKey(ctx, service.NewKey{Name: in.Body.Name, Role: auth.Role(in.Body.Role), MerchantID: in.Body.MerchantID})
		if err != nil {
			return nil, problem(err, "body")
		}
		return &struct{ Body *IssuedKeyBody }{issuedBody(k)}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "list-keys", Method: http.MethodGet, Path: "/v1/keys", Tags: tags,
		Summary: "List API keys", Description: "In id order (creation order), revoked ones included; keyset-paginated.",
	}, func(ctx context.Context, in *struct {
		Limit  int    `query:"limit" minimum:"1" maximum:"100" default:"20"`
		Cursor string `query:"cursor" maxLength:"64" doc:"next_cursor of the previous page"`
	}) (*struct{ Body KeyList }, error) {
		ks, next, err := h.svc.ListKeys(ctx, in.Cursor, in.Limit)
		if err != nil {
			return nil, problem(err, "query")
		}
		out := KeyList{Items: make([]KeyBody, len(ks)), NextCursor: next}
		for i, k := range ks {
			out.Items[i] = keyBody(k)
		}
		return &struct{ Body KeyList }{out}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "get-key", Method: http.MethodGet, Path: "/v1/keys/{id}", Tags: tags, Summary: "Get an API key",
	}, func(ctx context.Context, in *keyIDInput) (*struct{ Body KeyBody }, error) {
		k, err := h.svc.GetKey(ctx, in.ID)
		if err != nil {
			return nil, problem(err, "path")
		}
		return &struct{ Body KeyBody }{keyBody(k)}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "revoke-key", Method: http.MethodPost, Path: "/v1/keys/{id}/revoke", Tags: tags,
		Summary:     "Revoke an API key",
		Description: "The key stops working at once on the instance that revokes it, and on the others within a few seconds (COUPOND_KEY_CACHE_TTL). Revoking a revoked key changes nothing.",
	}, func(ctx context.Context, in *keyIDInput) (*struct{ Body KeyBody }, error) {
		k, err := h.svc.RevokeKey(ctx, in.ID)
		if err != nil {
			return nil, problem(err, "path")
		}
		return &struct{ Body KeyBody }{keyBody(k)}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "rotate-key", Method: http.MethodPost, Path: "/v1/keys/{id}/rotate", Tags: tags,
		Summary:      "Rotate an API key's secret",
		Description:  "Gives the key a new secret, in the answer once. The previous secret keeps working for grace_seconds, so clients can switch without downtime. A revoked key cannot be rotated (conflict).",
		MaxBodyBytes: maxClaimBody,
	}, func(ctx context.Context, in *struct {
		ID   string         `path:"id" maxLength:"64" doc:"key id"` // not embedded: huma reads no parameters of embedded unexported structs
		Body *RotateKeyBody `required:"false"`
	}) (*struct{ Body *IssuedKeyBody }, error) {
		grace := 0
		if in.Body != nil {
			grace = in.Body.GraceSeconds
		}
		k, err := h.svc.RotateKey(ctx, in.ID, time.Duration(grace)*time.Second)
		if err != nil {
			return nil, problem(err, "body")
		}
		return &struct{ Body *IssuedKeyBody }{issuedBody(k)}, nil
	})
}
