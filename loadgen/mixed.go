package loadgen

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
)

// The mix of a mixed run, in twentieths of the requests: what a shop's
// traffic during a sale looks like to coupond, reads dominating.
//
//	2/20 claim a coupon of the hot batch (a new user each time)
//	9/20 list a user's available coupons ("my coupons")
//	2/20 a user's badges
//	5/20 qualify a cart: which coupons apply and the best combination
//	2/20 reserve one of a user's coupons for an order, then confirm the order
//
// Reservations use the coupons claimed before the run, one each; when they
// are all used, those slots qualify carts instead.
func prepareMixed(ctx context.Context, c *http.Client, cfg *Config) (func(buf []byte, n int64) ([]byte, request), error) {
	users := cmp.Or(cfg.Users, 1000)
	per := cmp.Or(cfg.ClaimsPerUser, 5)
	held, err := claimForUsersKeeping(ctx, c, *cfg, users, per)
	if err != nil {
		return nil, err
	}
	hot := cfg.BatchID
	if hot == "" {
		if hot, err = createBatch(ctx, c, *cfg, cfg.Total, ""); err != nil {
			return nil, err
		}
	}
	claimURL := cfg.URL + "/v1/batches/" + hot + "/claims"
	usersURL := cfg.URL + "/v1/users/" + cfg.UserPrefix
	const cart = `"platform":"ios","cart":{"items":[{"id":"a","product_id":"p1","unit_price":10000,"quantity":1}]}`
	var reserved atomic.Int64
	return func(buf []byte, n int64) ([]byte, request) {
		user := strconv.FormatInt(n%int64(users), 10)
		slot := n % 20
		if slot >= 18 {
			if i := reserved.Add(1) - 1; i < int64(len(held)) {
				h := held[i]
				order := cfg.UserPrefix + "o" + strconv.FormatInt(n, 10)
				buf = append(buf, `{"order_id":"`+order+`","user_id":"`+cfg.UserPrefix+h.user+`",`+cart+`,"claim_ids":["`+h.claim+`"]}`...)
				confirm := request{kind: "confirm", method: http.MethodPost, url: cfg.URL + "/v1/orders/" + order + "/redemption/confirm", want: http.StatusOK}
				return buf, request{kind: "reserve", method: http.MethodPost, url: cfg.URL + "/v1/redemptions", body: buf, want: http.StatusCreated, then: &confirm}
			}
			slot = 13 // every coupon claimed before the run is used: qualify instead
		}
		switch {
		case slot < 2:
			buf = append(buf, `{"user_id":"`+cfg.UserPrefix+"h"+strconv.FormatInt(n, 10)+`","platform":"ios"}`...)
			return buf, request{kind: "claim", method: http.MethodPost, url: claimURL, body: buf, want: http.StatusCreated}
		case slot < 11:
			return buf, request{kind: "my_coupons", method: http.MethodGet, url: usersURL + user + "/claims?status=available", want: http.StatusOK}
		case slot < 13:
			return buf, request{kind: "badges", method: http.MethodGet, url: usersURL + user + "/badges", want: http.StatusOK}
		default:
			buf = append(buf, `{"user_id":"`+cfg.UserPrefix+user+`",`+cart+`}`...)
			return buf, request{kind: "qualify", method: http.MethodPost, url: cfg.URL + "/v1/qualifications", body: buf, want: http.StatusOK}
		}
	}, nil
}

// heldClaim is a coupon claimed before a run.
type heldClaim struct{ user, claim string }

// claimForUsersKeeping has users 0…users-1 claim per coupons each of a new
// batch and returns the claims, spread so that consecutive ones belong to
// different users.
func claimForUsersKeeping(ctx context.Context, c *http.Client, cfg Config, users, per int) ([]heldClaim, error) {
	id, err := createBatch(ctx, c, cfg, int64(users*per), fmt.Sprintf(`"per_user_limit":%d`, per))
	if err != nil {
		return nil, err
	}
	byRound := make([][]heldClaim, per)
	for r := range byRound {
		byRound[r] = make([]heldClaim, users)
	}
	work := make(chan int)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range min(cmp.Or(cfg.Concurrency, 32), 32) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range work {
				user := strconv.Itoa(u)
				body := `{"user_id":"` + cfg.UserPrefix + user + `","platform":"ios"}`
				for r := range per {
					var out struct {
						ID string `json:"id"`
					}
					if err := call(ctx, c, cfg, "/v1/batches/"+id+"/claims", body, http.StatusCreated, &out); err != nil {
						once.Do(func() { first = err })
						return
					}
					byRound[r][u] = heldClaim{user: user, claim: out.ID}
				}
			}
		}()
	}
	for u := range users {
		work <- u
	}
	close(work)
	wg.Wait()
	if first != nil {
		return nil, fmt.Errorf("claim for the mixed run: %w", first)
	}
	var held []heldClaim
	for _, r := range byRound {
		held = append(held, r...)
	}
	return held, nil
}
