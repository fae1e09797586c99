package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/coupond/coupond/service"
)

// ChallengeBody asks for an SMS challenge.
type ChallengeBody struct {
	BatchID string `json:"batch_id" minLength:"1" maxLength:"64" doc:"the batch the user means to claim"`
	UserID  string `json:"user_id" minLength:"1" maxLength:"128" doc:"the user who will claim: the challenge solves that user's claim only"`
	Phone   string `json:"phone" minLength:"5" maxLength:"21" doc:"where the code goes: digits with an optional leading +"`
}

// ChallengeView is a challenge sent.
type ChallengeView struct {
	ID          string    `json:"id" doc:"send it with the code in the claim, as sms_challenge_id"`
	BatchID     string    `json:"batch_id"`
	ExpiresAt   time.Time `json:"expires_at" doc:"the code works until then"`
	ResendAfter time.Time `json:"resend_after" doc:"the phone may get another code from then on"`
}

func (h *handlers) registerSMS(api huma.API) {
	huma.Register(api, huma.Operation{
		OperationID: "create-sms-challenge", Method: http.MethodPost, Path: "/v1/sms/challenges", Tags: []string{"sms"},
		Summary: "Send an SMS challenge",
		Description: "Sends a one-time code to the user's phone, for a batch that requires SMS verification or whose risk rules ask for it. " +
			"The claim then carries sms_challenge_id and sms_code. A code expires (COUPOND_SMS_TTL, 5 minutes by default), " +
			"is used up by one claim or by COUPOND_SMS_MAX_ATTEMPTS wrong codes, and a phone gets one code per COUPOND_SMS_RESEND " +
			"(`rate_limited` with Retry-After otherwise). Refusals: `blocked`, `rate_limited`, `not_claimable`, `not_found`.",
		DefaultStatus: http.StatusCreated, MaxBodyBytes: maxClaimBody,
	}, func(ctx context.Context, in *struct{ Body ChallengeBody }) (*struct{ Body ChallengeView }, error) {
		c, err := h.svc.CreateChallenge(ctx, service.ChallengeRequest{BatchID: in.Body.BatchID, UserID: in.Body.UserID, Phone: in.Body.Phone})
		if err != nil {
			return nil, problem(err, "body")
		}
		return &struct{ Body ChallengeView }{ChallengeView{ID: c.ID, BatchID: c.BatchID, ExpiresAt: c.ExpiresAt, ResendAfter: c.ResendAfter}}, nil
	})
}
