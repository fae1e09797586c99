package redis_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/coupond/coupond/engine"
	"github.com/coupond/coupond/engine/redis"
	"github.com/coupond/coupond/engine/redis/redistest"
)

// TestUserReadsSentTogetherKeepTheirOwnAnswers: "my coupons" reads of many
// concurrent callers share pipelines (userreads.go); each caller gets its
// own user's value, a miss its own version, under -race.
func TestUserReadsSentTogetherKeepTheirOwnAnswers(t *testing.T) {
	e := open(t, redis.Config{URL: redistest.URL(t)})
	ctx := t.Context()
	const users = 60
	for u := range users {
		user := fmt.Sprint("ur-", u)
		if u%3 == 0 { // a miss whose version is u
			for range u {
				require.NoError(t, e.UserClaimsChanged(ctx, []string{user}))
			}
			continue
		}
		_, version, _, err := e.GetUserClaims(ctx, user)
		require.NoError(t, err)
		ok, err := e.FillUserClaims(ctx, user, version, []byte("value of "+user), time.Minute)
		require.NoError(t, err)
		require.True(t, ok)
	}
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for range 300 {
				u := rand.IntN(users)
				user := fmt.Sprint("ur-", u)
				value, version, hit, err := e.GetUserClaims(ctx, user)
				if err != nil {
					t.Error(err)
					return
				}
				if u%3 == 0 {
					if hit || version != int64(u) {
						t.Errorf("%s: hit %t version %d, want a miss at version %d", user, hit, version, u)
					}
				} else if !hit || string(value) != "value of "+user {
					t.Errorf("%s: hit %t value %q", user, hit, value)
				}
			}
		})
	}
	wg.Wait()
}

// TestUserReadStopsAtItsContext: a read waits no longer than its context,
// even when Redis never answers (a server that accepts and stays silent),
// and after Close a read fails at once.
func TestUserReadStopsAtItsContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	client := goredis.NewClient(&goredis.Options{Addr: ln.Addr().String(), ReadTimeout: time.Second, MaxRetries: -1})
	e := redis.New(client, redis.Options{Prefix: "silent"})
	defer client.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, _, err = e.GetUserClaims(ctx, "u1")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 2*time.Second, "the read waited past its context")

	done := make(chan error, 1)
	go func() { done <- e.Close() }()
	start = time.Now()
	_, _, _, err = e.GetUserClaims(context.Background(), "u2")
	require.Error(t, err)
	require.Less(t, time.Since(start), 5*time.Second)
	<-done
	var _ engine.Cache = e
}
