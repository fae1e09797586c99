package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/coupond/coupond/engine"
)

// The cache's keys. A user's keys share the user's hash tag (a user's
// claims span batches, so no batch's tag fits); a ref's tags are one hash:
//
//	cp:u:{<user>}:v    string: the user's version (INCR), absent = 0
//	cp:u:{<user>}:c    string: the cached value, expiring
//	cp:tag:{<ref>}     hash: batch id → the tag's data
var (
	fillScript  = script("user_fill.lua")
	touchScript = script("user_touch.lua")
)

func (e *Engine) userKeys(user string) []string {
	p := e.prefix + ":u:{" + user + "}:"
	return []string{p + "v", p + "c"}
}

func (e *Engine) tagKey(ref string) string { return e.prefix + ":tag:{" + ref + "}" }

// GetUserClaims reads the value and the version in one MGET (one slot),
// sent with the reads of concurrent callers (userreads.go).
func (e *Engine) GetUserClaims(ctx context.Context, userID string) ([]byte, int64, bool, error) {
	res, err := e.getUser(ctx, userID)
	if err != nil {
		return nil, 0, false, fail("get user claims", err)
	}
	if v, ok := res[0].(string); ok {
		return []byte(v), 0, true, nil
	}
	var version int64
	if s, ok := res[1].(string); ok {
		if _, err := fmt.Sscan(s, &version); err != nil {
			return nil, 0, false, fmt.Errorf("redis engine: get user claims: version %q: %w", s, err)
		}
	}
	return nil, version, false, nil
}

// FillUserClaims stores value if the version is unchanged, in one script.
func (e *Engine) FillUserClaims(ctx context.Context, userID string, version int64, value []byte, ttl time.Duration) (bool, error) {
	if ttl <= 0 || ttl >= engine.VersionTTL {
		return false, fmt.Errorf("redis engine: fill ttl %v must be positive and below %v", ttl, engine.VersionTTL)
	}
	n, err := fillScript.Run(ctx, e.client, e.userKeys(userID), version, value,
		max(ttl.Milliseconds(), 1), engine.VersionTTL.Milliseconds()).Int64()
	if err != nil {
		return false, fail("fill user claims", err)
	}
	return n == 1, nil
}

// UserClaimsChanged bumps each user in one pipeline.
func (e *Engine) UserClaimsChanged(ctx context.Context, userIDs []string) error {
	return e.SettleAndTouch(ctx, nil, userIDs)
}

// SettleAndTouch sends the Settle scripts of the batches and the bumps of
// the users in one pipeline: one round trip (per node, in parallel, on a
// cluster) where a group commit made one for its Settle before.
func (e *Engine) SettleAndTouch(ctx context.Context, settled []engine.Settlement, userIDs []string) error {
	if len(settled) == 0 && len(userIDs) == 0 {
		return nil
	}
	type queued struct {
		cmd  *goredis.Cmd
		s    *goredis.Script
		keys []string
		args []any
	}
	var cmds []queued
	pipe := e.client.Pipeline()
	add := func(s *goredis.Script, keys []string, args []any) {
		cmds = append(cmds, queued{cmd: s.EvalSha(ctx, pipe, keys, args...), s: s, keys: keys, args: args})
	}
	for _, st := range settled {
		k := e.batchKeys(st.BatchID)
		keys := []string{k[keyMeta], k[keyPending], k[keyPendingInfo]}
		codes := st.Codes
		for {
			n := min(len(codes), settleSlice)
			add(settleScript, keys, anys(codes[:n]))
			if codes = codes[n:]; len(codes) == 0 {
				break
			}
		}
	}
	ttl := engine.VersionTTL.Milliseconds()
	for _, u := range userIDs {
		add(touchScript, e.userKeys(u), []any{ttl})
	}
	_, _ = pipe.Exec(ctx) // each command's error is read below
	var errs []error
	for i, q := range cmds {
		err := q.cmd.Err()
		if err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			// The server lost its script cache (a restart): EVAL this one.
			q.cmd = q.s.Run(ctx, e.client, q.keys, q.args...)
			err = q.cmd.Err()
		}
		if err != nil {
			errs = append(errs, fail("settle and touch", err))
			continue
		}
		if i < len(cmds)-len(userIDs) {
			if status, _ := q.cmd.Int64(); status != 0 {
				errs = append(errs, refusal("settle", status))
			}
		}
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// SetTags sets the batch's field on each ref's hash, in one pipeline.
func (e *Engine) SetTags(ctx context.Context, batchID string, refs []string, data []byte) error {
	if len(refs) == 0 {
		return nil
	}
	pipe := e.client.Pipeline()
	for _, r := range refs {
		pipe.HSet(ctx, e.tagKey(r), batchID, data)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fail("set tags", err)
	}
	return nil
}

// RemoveTags deletes the batch's field from each ref's hash.
func (e *Engine) RemoveTags(ctx context.Context, batchID string, refs []string) error {
	if len(refs) == 0 {
		return nil
	}
	pipe := e.client.Pipeline()
	for _, r := range refs {
		pipe.HDel(ctx, e.tagKey(r), batchID)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fail("remove tags", err)
	}
	return nil
}

// Tags reads every ref's hash in one pipeline.
func (e *Engine) Tags(ctx context.Context, refs []string) ([][]engine.Tag, error) {
	out := make([][]engine.Tag, len(refs))
	if len(refs) == 0 {
		return out, nil
	}
	pipe := e.client.Pipeline()
	cmds := make([]*goredis.MapStringStringCmd, len(refs))
	for i, r := range refs {
		cmds[i] = pipe.HGetAll(ctx, e.tagKey(r))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return nil, fail("tags", err)
	}
	for i, c := range cmds {
		m := c.Val()
		tags := make([]engine.Tag, 0, len(m))
		for b, d := range m {
			tags = append(tags, engine.Tag{BatchID: b, Data: []byte(d)})
		}
		slices.SortFunc(tags, func(x, y engine.Tag) int { return strings.Compare(x.BatchID, y.BatchID) })
		out[i] = tags
	}
	return out, nil
}
