package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/coupond/coupond/access"
	"github.com/coupond/coupond/auth"
	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/service"
)

// maxSignedBody bounds the body a signed request may have: the signature
// covers its hash, so it is read before any operation's own limit applies.
const maxSignedBody = maxListBody

// Authenticator returns the Config.Authenticate of API keys: a bearer
// token "<key id>.<secret>", or a request signed with the key's secret
// (auth.Scheme: HMAC-SHA256 over the method, path, query, timestamp, nonce
// and the body's hash). now is the clock signatures are checked against
// (nil: time.Now).
//
// A signed request's nonce is used once: a signed claim's by its claim
// step, in the same engine round trip as the claim (in the batch's scope),
// or by the service when the claim fails before that step; every other
// request's here, with an engine call of its own. Refusals are recorded
// for operators.
func Authenticator(svc *service.Service, now func() time.Time) func(*http.Request) (auth.Principal, bool, error) {
	if now == nil {
		now = time.Now
	}
	return func(r *http.Request) (auth.Principal, bool, error) {
		h := r.Header.Get("Authorization")
		switch {
		case auth.IsSigned(h):
			p, err := verifySigned(svc, r, h, now())
			if err != nil {
				if access.IsRefusal(err) {
					keyID := ""
					if sig, perr := auth.ParseAuthorization(h); perr == nil {
						keyID = sig.KeyID
					}
					svc.RecordRefusal(r.Context(), access.Refusal{Code: coupon.ErrorCode(err),
						Reason: r.Method + " " + r.URL.Path + ": " + err.Error(), KeyID: keyID})
				}
				return auth.Principal{}, false, err
			}
			return p, true, nil
		case strings.HasPrefix(h, "Bearer "):
			if _, _, ok := auth.ParseToken(h[len("Bearer "):]); !ok {
				return auth.Principal{}, false, nil // not an API key: 401
			}
			p, err := svc.AuthenticateBearer(r.Context(), h[len("Bearer "):])
			if errors.Is(err, service.ErrUnknownKey) {
				return auth.Principal{}, false, nil
			}
			if err != nil {
				return auth.Principal{}, false, err
			}
			return p, true, nil
		}
		return auth.Principal{}, false, nil
	}
}

// verifySigned checks a signed request and uses its nonce.
func verifySigned(svc *service.Service, r *http.Request, h string, now time.Time) (auth.Principal, error) {
	ctx := r.Context()
	sig, err := auth.ParseAuthorization(h)
	if err != nil {
		return auth.Principal{}, fmt.Errorf("%w: expected %s Credential=<key id>, Timestamp=<unix seconds>, Nonce=<16 to 64 of A-Za-z0-9_->, Signature=<64 hex digits>: %w",
			err, auth.Scheme, access.ErrBadSignature)
	}
	kc, err := svc.KeyCredential(ctx, sig.KeyID)
	if err != nil {
		return auth.Principal{}, err
	}
	body, err := readBody(r)
	if err != nil {
		return auth.Principal{}, err
	}
	req := auth.Request{Method: r.Method, Path: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery, BodyHash: sha256.Sum256(body)}
	err = auth.ErrMismatch
	for _, secret := range kc.Secrets {
		if err = auth.Verify(sig, secret, req, now, svc.SignatureSkew()); err == nil || errors.Is(err, auth.ErrStale) {
			break
		}
	}
	switch {
	case errors.Is(err, auth.ErrStale):
		return auth.Principal{}, fmt.Errorf("timestamp %d is more than %s from the server's clock %d: %w",
			sig.Timestamp, svc.SignatureSkew(), now.Unix(), access.ErrBadSignature)
	case err != nil:
		return auth.Principal{}, fmt.Errorf("%w (see docs/access.md for the string to sign): %w", err, access.ErrBadSignature)
	}
	if r.Method == http.MethodPost && isClaimPath(r.URL.Path) {
		// The claim step checks the nonce: the request carries it on. The
		// hook cannot return a context, so the request takes a new one.
		*r = *r.WithContext(context.WithValue(ctx, nonceKey{}, sig.KeyID+":"+sig.Nonce))
	} else if err := svc.UseNonce(ctx, sig.KeyID, sig.Nonce); err != nil {
		return auth.Principal{}, err
	}
	return kc.Principal, nil
}

// readBody reads a signed request's body, at most maxSignedBody, and puts
// it back for the operation.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxSignedBody+1))
	_ = r.Body.Close()
	if err != nil {
		return nil, coupon.Errorf(coupon.CodeInvalid, "reading the body: %v", err)
	}
	if len(body) > maxSignedBody {
		return nil, errTooLarge
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return body, nil
}

// errTooLarge answers a signed body beyond maxSignedBody.
var errTooLarge = &coupon.Error{Code: codeTooLarge, Message: fmt.Sprintf("a signed request's body must be at most %d bytes", maxSignedBody)}

type nonceKey struct{}

// claimNonce is the "<key id>:<nonce>" of a signed claim, "" for others.
func claimNonce(ctx context.Context) string {
	n, _ := ctx.Value(nonceKey{}).(string)
	return n
}
