package httpapi

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/service"
)

// Passive distribution: partner code imports, grants and bulk grant jobs.
// Imports and job lists are uploads of any size, read as a stream: huma
// does not read their bodies (their inputs have no Body), the handler
// reads the request's body itself (streamBody).

// GrantBody grants a coupon to a user.
type GrantBody struct {
	UserID   string `json:"user_id" minLength:"1" maxLength:"128" doc:"the user the coupon is for"`
	Phone    string `json:"phone,omitempty" maxLength:"21" doc:"the user's phone number, digits with an optional leading +"`
	OpenID   string `json:"open_id,omitempty" maxLength:"128" doc:"the user's OpenID"`
	Platform string `json:"platform,omitempty" maxLength:"32" doc:"platform recorded on the claim"`
	Channel  string `json:"channel,omitempty" maxLength:"128" doc:"channel recorded on the claim; default grant"`
}

// streamBody gives a handler the request body as a stream, with the
// server's read and write deadlines lifted for a long upload.
type streamBody struct {
	body io.Reader
}

// uploadDeadline bounds one upload (a list of millions of lines).
const uploadDeadline = time.Hour

// Resolve takes the body before huma would (it reads none for an input
// without Body).
func (s *streamBody) Resolve(ctx huma.Context) []error {
	s.body = ctx.BodyReader()
	if r, w := humago.Unwrap(ctx); r != nil && w != nil {
		rc := http.NewResponseController(w)
		deadline := time.Now().Add(uploadDeadline)
		_ = rc.SetReadDeadline(deadline) // best effort: a wrapped writer may not allow it
		_ = rc.SetWriteDeadline(deadline)
	}
	return nil
}

func uploadBody(contentType, example string) *huma.RequestBody {
	return &huma.RequestBody{Required: true, Description: "the file, streamed", Content: map[string]*huma.MediaType{
		contentType: {Schema: &huma.Schema{Type: "string", Description: "lines of text"}, Example: example},
	}}
}

func (h *handlers) registerDistribution(api huma.API) {
	huma.Register(api, huma.Operation{
		OperationID: "import-codes", Method: http.MethodPost, Path: "/v1/batches/{id}/imports", Tags: []string{"codes"},
		Summary: "Import a partner's codes",
		Description: "Adds the codes of a CSV file to a batch whose `source` is `external`, read as a stream: one code a line, " +
			"`code[,amount][,key=value…]` — the amount in minor units (default: the batch's amount), then the code's custom tags. " +
			"A first line starting with `code` is a header. Codes are kept as given: 1 to 64 letters, digits, `-`, `_`, `.`. " +
			"Each refused line is reported by number with a reason (`blank`, `malformed`, `duplicate` of an earlier line, `taken` by another batch, " +
			"`full`: the batch holds its total); the good lines are kept. Running the same file again adds nothing: its lines count as `existing`. " +
			"Codes imported into a live batch are in its pool at once; into a draft, at publication.",
		RequestBody: uploadBody("text/csv", "code,amount\nACME-0001,500,tier=gold\nACME-0002\n"),
	}, func(ctx context.Context, in *struct {
		ID string `path:"id" maxLength:"64" doc:"batch id"`
		streamBody
	}) (*struct{ Body *service.ImportResult }, error) {
		res, err := h.svc.ImportCodes(ctx, service.ImportRequest{BatchID: in.ID, Body: in.body})
		if err != nil {
			return nil, problem(err, "body")
		}
		return &struct{ Body *service.ImportResult }{res}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "grant", Method: http.MethodPost, Path: "/v1/batches/{id}/grants", Tags: []string{"claims"},
		Summary: "Grant a coupon to a user",
		Description: "The business hands the user one coupon of the batch (server to server), through the same claim path as a user's claim: " +
			"the total, the per-user limit and the lists hold; the user-facing checks (SMS, device and IP rate limits, risk rules) do not apply. " +
			"The `Idempotency-Key` is required: a retry returns the same claim with `Idempotent-Replayed: true` and never grants twice. " +
			"The claim records the channel (default `grant`).",
		DefaultStatus: http.StatusCreated, MaxBodyBytes: maxClaimBody,
	}, func(ctx context.Context, in *struct {
		ID             string `path:"id" maxLength:"64" doc:"batch id"`
		IdempotencyKey string `header:"Idempotency-Key" required:"true" maxLength:"128" doc:"makes retries safe: 1 to 128 printable ASCII characters; required"`
		Body           GrantBody
	}) (*claimOutput, error) {
		c, replayed, err := h.svc.Grant(ctx, service.GrantRequest{
			BatchID:        in.ID,
			Claimant:       coupon.Claimant{UserID: in.Body.UserID, Phone: in.Body.Phone, OpenID: in.Body.OpenID, Platform: in.Body.Platform},
			IdempotencyKey: in.IdempotencyKey, Channel: in.Body.Channel,
		})
		if err != nil {
			return nil, problem(err, "body")
		}
		out := &claimOutput{Body: c}
		if replayed {
			out.Replayed = "true"
		}
		return out, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "create-grant-job", Method: http.MethodPost, Path: "/v1/batches/{id}/grant-jobs", Tags: []string{"jobs"},
		Summary: "Grant a coupon to each user of a list",
		Description: "Stores the list (one user id a line, read as a stream; a first line `user_id` is a header, blank lines are skipped) " +
			"and queues a job that grants the batch to each user, once per line, through the claim path. " +
			"The answer comes when the list is stored; follow the job at `GET /v1/jobs/{id}`. " +
			"A job survives restarts: after a crash another instance resumes it, and no user is granted twice for one line.",
		RequestBody:   uploadBody("text/plain", "user_id\nalice\nbob\n"),
		DefaultStatus: http.StatusAccepted,
	}, func(ctx context.Context, in *struct {
		ID      string `path:"id" maxLength:"64" doc:"batch id"`
		Channel string `query:"channel" maxLength:"128" doc:"channel recorded on the claims; default grant_job"`
		streamBody
	}) (*struct{ Body *service.JobView }, error) {
		v, err := h.svc.CreateGrantJob(ctx, service.GrantJobRequest{BatchID: in.ID, Channel: in.Channel, Users: in.body})
		if err != nil {
			return nil, problem(err, "query")
		}
		return &struct{ Body *service.JobView }{v}, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "get-job", Method: http.MethodGet, Path: "/v1/jobs/{id}", Tags: []string{"jobs"},
		Summary: "Follow a job",
		Description: "A bulk grant job's progress: users done, failed (with one page of failures and their reasons) and remaining. " +
			"Page through the failures with `failures_after`.",
	}, func(ctx context.Context, in *struct {
		ID            string `path:"id" maxLength:"64" doc:"job id"`
		FailuresAfter int64  `query:"failures_after" minimum:"0" doc:"list failures after this line (next_failures_after of the previous page)"`
		Limit         int    `query:"limit" minimum:"1" maximum:"1000" default:"100" doc:"most failures listed"`
	}) (*struct{ Body *service.JobView }, error) {
		v, err := h.svc.GetJob(ctx, in.ID, in.FailuresAfter, in.Limit)
		if err != nil {
			return nil, problem(err, "path")
		}
		return &struct{ Body *service.JobView }{v}, nil
	})
}
