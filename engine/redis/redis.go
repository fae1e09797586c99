// Package redis is the engine shared by several coupond instances: every
// batch's pool, per-user sequence numbers, idempotency keys and pending
// claims live in Redis, and each step of the engine.Engine contract is one
// Lua script (lua/*.lua), so it is atomic and costs one round trip.
//
// # Keys
//
// All keys of a batch share one hash tag, so every script runs on one node
// of a Redis Cluster and batches spread over the shards:
//
//	cp:{<batch>}:meta          hash: active (1/0), limit, claimed, loaded (LoadedSeq)
//	cp:{<batch>}:pool          list of "<amount>:<code>", next code first
//	cp:{<batch>}:users         hash: user → "high" or "high,hole,hole…"
//	cp:{<batch>}:keys          hash: idempotency key → the claim it made
//	cp:{<batch>}:pending       sorted set: code → At in microseconds
//	cp:{<batch>}:pending:info  hash: code → claim id, user, key, amount, seq
//	cp:lease:{<name>}          string: the token of the lease's holder
//
// A Rebuild, and an AddCodes too large for one script's arguments, stage
// their entries under temporary keys of the batch's hash tag first.
//
// A user holds the sequence numbers 1..high except the holes that undos
// left, as in the memory engine. The keys hash is indexed by
// "<len(user)>:<user><key>", and its records, like those of pending:info,
// are fields written "<length>:<bytes>", so no user, key or code can be
// mistaken for another.
//
// # Lost state
//
// The meta hash of a batch exists exactly while the batch is loaded. Every
// per-batch script checks it first and answers engine.ErrUnknownBatch when
// it is missing, so a Redis that restarted empty, failed over to a replica
// that had not seen the batch, or was flushed is noticed by the first call
// after it: the service rebuilds the batch from the store and retries.
package redis

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/coupond/coupond/coupon"
	"github.com/coupond/coupond/engine"
)

var _ engine.Engine = (*Engine)(nil)

// Engine is engine.Engine on Redis or Redis Cluster. It keeps no state of
// its own: any number of instances may share one Redis.
type Engine struct {
	client goredis.UniversalClient
	prefix string
	owned  bool // Close closes the client: Open made it
	reads  userReads
}

// Options tune an Engine.
type Options struct {
	// Prefix begins every key; "cp" if empty. Engines sharing a Redis see
	// each other's batches and leases only under the same prefix.
	Prefix string
}

// Config says which Redis Open connects to.
type Config struct {
	// URL is redis://[[user]:password@]host[:port][/db][?option=value…], or
	// rediss:// for TLS, with the options of go-redis's ParseURL (pool_size,
	// dial_timeout, max_retries…). For a cluster it names one node, and more
	// seed nodes may follow as addr=host:port options.
	URL string
	// Cluster connects to a Redis Cluster rather than one server.
	Cluster bool
	// Prefix is Options.Prefix.
	Prefix string
}

// New returns an engine on client, which it does not close: the caller owns
// it. The client's retries may run a claim twice after a network error that
// struck the first run's reply; the second code is then pending and
// unsettled, and the reconciler reclaims it.
func New(client goredis.UniversalClient, opts Options) *Engine {
	prefix := opts.Prefix
	if prefix == "" {
		prefix = "cp"
	}
	return &Engine{client: client, prefix: prefix}
}

// Open connects to the Redis of cfg and checks that it answers. Close
// closes the connection.
func Open(ctx context.Context, cfg Config) (*Engine, error) {
	var client goredis.UniversalClient
	if cfg.Cluster {
		o, err := goredis.ParseClusterURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("redis engine: cluster URL: %w", err)
		}
		client = goredis.NewClusterClient(o)
	} else {
		o, err := goredis.ParseURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("redis engine: URL: %w", err)
		}
		client = goredis.NewClient(o)
	}
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		return nil, fail("ping", err)
	}
	e := New(client, Options{Prefix: cfg.Prefix})
	e.owned = true
	return e, nil
}

// Refusals of the scripts, the first element or the whole of their replies.
const (
	statusUnknownBatch = -1
	statusNotClaimable = -2
	statusLimitReached = -3
	statusSoldOut      = -4
	statusStagingLost  = -5
	statusStale        = -6
)

// Claim runs the claim step, lua/claim.lua, in one round trip. At is kept
// to the microsecond.
func (e *Engine) Claim(ctx context.Context, p engine.ClaimParams) (engine.ClaimResult, error) {
	keys := e.batchKeys(p.BatchID)
	args := []any{p.UserID, p.IdempotencyKey, p.ClaimID, p.At.UnixMicro()}
	var res []any
	var err error
	if p.Protect != nil {
		res, err = e.protectedClaim(ctx, keys, args, p) // protection.go: the checks and this step in one script
	} else {
		res, err = claimScript.Run(ctx, e.client, keys[:], args...).Slice()
	}
	if err != nil {
		return engine.ClaimResult{}, fail("claim", err)
	}
	r := reply{res: res}
	switch status := r.int(0); status {
	case 0:
		out := engine.ClaimResult{Seq: int(r.int(1)), Amount: r.amount(2), Code: r.string(3), ClaimID: p.ClaimID}
		return out, r.check("claim", 4)
	case 1:
		out := engine.ClaimResult{
			Seq: int(r.int(1)), Amount: r.amount(2), Code: r.string(3), ClaimID: r.string(4), Replayed: true,
		}
		return out, r.check("claim", 5)
	default:
		if err, ok := protectionRefusal(p, res); ok {
			return engine.ClaimResult{}, err
		}
		if err := r.check("claim", 1); err != nil {
			return engine.ClaimResult{}, err
		}
		return engine.ClaimResult{}, refusal("claim", status)
	}
}

// Settle removes the codes' claims from the pending ones, in slices of
// settleSlice codes a script.
func (e *Engine) Settle(ctx context.Context, batchID string, codes []string) error {
	k := e.batchKeys(batchID)
	keys := []string{k[keyMeta], k[keyPending], k[keyPendingInfo]}
	for {
		// Even with no codes, one run answers ErrUnknownBatch as it should.
		n := min(len(codes), settleSlice)
		status, err := settleScript.Run(ctx, e.client, keys, anys(codes[:n])...).Int64()
		if err != nil {
			return fail("settle", err)
		}
		if status != 0 {
			return refusal("settle", status)
		}
		if codes = codes[n:]; len(codes) == 0 {
			return nil
		}
	}
}

// Pending lists the pending claims before `before`, oldest first; claims
// made in the same microsecond come in the order of their codes.
func (e *Engine) Pending(ctx context.Context, batchID string, before time.Time, limit int) ([]engine.PendingClaim, error) {
	k := e.batchKeys(batchID)
	res, err := pendingScript.Run(ctx, e.client, []string{k[keyMeta], k[keyPending], k[keyPendingInfo]},
		before.UnixMicro(), max(limit, 0)).Slice()
	if err != nil {
		return nil, fail("pending", err)
	}
	r := reply{res: res}
	if status := r.int(0); status != 0 {
		if err := r.check("pending", 1); err != nil {
			return nil, err
		}
		return nil, refusal("pending", status)
	}
	const fields = 7
	if (len(res)-1)%fields != 0 {
		return nil, fmt.Errorf("redis engine: pending: reply of %d elements", len(res))
	}
	var out []engine.PendingClaim
	for i := 1; i < len(res); i += fields {
		out = append(out, engine.PendingClaim{
			BatchID:        batchID,
			Code:           r.string(i),
			At:             time.UnixMicro(r.score(i + 1)).UTC(),
			ClaimID:        r.string(i + 2),
			UserID:         r.string(i + 3),
			IdempotencyKey: r.string(i + 4),
			Amount:         r.amount(i + 5),
			Seq:            int(r.parsedInt(i + 6)),
		})
	}
	return out, r.check("pending", len(res))
}

// Reclaim undoes p if the claim pending for p.Code is p (At aside), in one
// script with the check, so concurrent reclaimers cannot both succeed.
func (e *Engine) Reclaim(ctx context.Context, p engine.PendingClaim) (bool, error) {
	keys := e.batchKeys(p.BatchID)
	status, err := undoScript.Run(ctx, e.client, keys[:], "reclaim", p.UserID, p.IdempotencyKey, p.Code,
		strconv.FormatInt(p.Amount, 10), strconv.Itoa(p.Seq), p.ClaimID).Int64()
	if err != nil {
		return false, fail("reclaim", err)
	}
	switch status {
	case 0, 1:
		return status == 1, nil
	default:
		return false, refusal("reclaim", status)
	}
}

// Undo reverses a claim, dropping its pending entry if its code is pending
// for the same user.
func (e *Engine) Undo(ctx context.Context, p engine.UndoParams) error {
	keys := e.batchKeys(p.BatchID)
	status, err := undoScript.Run(ctx, e.client, keys[:], "undo", p.UserID, p.IdempotencyKey, p.Code,
		strconv.FormatInt(p.Amount, 10), strconv.Itoa(p.Seq), flag(p.KeepCode), flag(p.KeepSeq)).Int64()
	if err != nil {
		return fail("undo", err)
	}
	if status != 1 {
		return refusal("undo", status)
	}
	return nil
}

// SetBatch records whether the batch is claimable and its per-user limit.
func (e *Engine) SetBatch(ctx context.Context, s engine.BatchState) error {
	k := e.batchKeys(s.BatchID)
	status, err := setBatchScript.Run(ctx, e.client, []string{k[keyMeta]}, flag(s.Active), s.PerUserLimit).Int64()
	if err != nil {
		return fail("set batch", err)
	}
	if status != 0 {
		return refusal("set batch", status)
	}
	return nil
}

// AddCodes loads codes into the pool if the batch's loaded sequence number
// is fromSeq, and sets it to throughSeq, in one script (lua/add_codes.lua),
// so that of several loaders of one range exactly one pushes its codes.
// Up to addCodesSlice codes go as the script's arguments; a larger load
// stages the others first, through a pipeline of bounded slices, in a list
// of its own under the batch's hash tag (expiring after stagingTTL should
// the process die meanwhile), which the script moves into the pool.
func (e *Engine) AddCodes(ctx context.Context, batchID string, fromSeq, throughSeq int64, codes []engine.PoolCode) error {
	if throughSeq < fromSeq {
		return fmt.Errorf("redis engine: add codes to batch %s: through %d is below from %d", batchID, throughSeq, fromSeq)
	}
	k := e.batchKeys(batchID)
	staging := k.load(newToken())
	staged := max(len(codes)-addCodesSlice, 0)
	if staged > 0 {
		pipe := e.client.Pipeline()
		for rest := codes[:staged]; len(rest) > 0; {
			n := min(len(rest), rebuildSlice)
			entries := make([]any, n)
			for i, c := range rest[:n] {
				entries[i] = poolEntry(c)
			}
			pipe.RPush(ctx, staging, entries...)
			rest = rest[n:]
			if pipe.Len() >= rebuildPipeline {
				pipe.PExpire(ctx, staging, stagingTTL)
				if _, err := pipe.Exec(ctx); err != nil {
					return fail("add codes", err)
				}
			}
		}
		pipe.PExpire(ctx, staging, stagingTTL)
		if _, err := pipe.Exec(ctx); err != nil {
			return fail("add codes", err)
		}
	}
	args := make([]any, 0, 3+len(codes)-staged)
	args = append(args, fromSeq, throughSeq, staged)
	for _, c := range codes[staged:] {
		args = append(args, poolEntry(c))
	}
	status, err := addCodesScript.Run(ctx, e.client, []string{k[keyMeta], k[keyPool], staging}, args...).Int64()
	if err != nil {
		return fail("add codes", err)
	}
	switch status {
	case 0:
		return nil
	case statusStale:
		return engine.ErrStaleLoad
	case statusStagingLost:
		return fmt.Errorf("redis engine: add codes to batch %s: the staged codes were lost (did Redis restart?): %w",
			batchID, coupon.ErrUnavailable)
	default:
		return refusal("add codes", status)
	}
}

// Rebuild replaces the batch's state with the snapshot. It stages the
// pool, users and keys under keys of their own (in the batch's hash tag,
// expiring after stagingTTL should the process die meanwhile), through
// pipelines of bounded slices, then swaps them in with lua/rebuild.lua,
// which drops the pending claims and writes the meta hash last.
//
// So a Rebuild is all or nothing: claims see the old state (or, for a batch
// that was lost, ErrUnknownBatch) until the swap, and the complete new one
// after it, never a pool half loaded. Two instances rebuilding one batch at
// once each swap in a whole snapshot; the last swap wins. If Redis lost the
// staged keys meanwhile (a restart, a flush), the swap refuses and Rebuild
// fails with coupon.ErrUnavailable, changing nothing.
func (e *Engine) Rebuild(ctx context.Context, snap engine.Snapshot) error {
	k := e.batchKeys(snap.Batch.BatchID)
	stage := k.staging(newToken())

	users := make(map[string][]int, len(snap.Users))
	var claimed int64
	for _, us := range snap.Users {
		seqs := users[us.UserID]
		for _, s := range us.Seqs {
			if s >= 1 && !slices.Contains(seqs, s) {
				seqs = append(seqs, s)
				claimed++
			}
		}
		if len(seqs) > 0 {
			users[us.UserID] = seqs
		}
	}
	keyRecords := make(map[string]string, len(snap.Keys))
	for _, ke := range snap.Keys {
		keyRecords[keyField(ke.UserID, ke.Key)] = record(ke.ClaimID, ke.Code, strconv.FormatInt(ke.Amount, 10), strconv.Itoa(ke.Seq))
	}

	pipe := e.client.Pipeline()
	flush := func() error {
		// Each pass renews the staging's expiry, so only an abandoned one expires.
		for _, key := range stage {
			pipe.PExpire(ctx, key, stagingTTL)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fail("rebuild", err)
		}
		return nil
	}
	queue := func() error {
		if pipe.Len() < rebuildPipeline {
			return nil
		}
		return flush()
	}
	pipe.Set(ctx, stage[stageMarker], 1, stagingTTL)
	for rest := snap.Pool; len(rest) > 0; {
		n := min(len(rest), rebuildSlice)
		entries := make([]any, n)
		for i, c := range rest[:n] {
			entries[i] = poolEntry(c)
		}
		pipe.RPush(ctx, stage[stagePool], entries...)
		rest = rest[n:]
		if err := queue(); err != nil {
			return err
		}
	}
	fields := make([]any, 0, 2*rebuildSlice)
	for user, seqs := range users {
		fields = append(fields, user, userState(seqs))
		if len(fields) == cap(fields) {
			pipe.HSet(ctx, stage[stageUsers], fields...)
			fields = make([]any, 0, 2*rebuildSlice)
			if err := queue(); err != nil {
				return err
			}
		}
	}
	if len(fields) > 0 {
		pipe.HSet(ctx, stage[stageUsers], fields...)
		fields = make([]any, 0, 2*rebuildSlice)
	}
	for field, rec := range keyRecords {
		fields = append(fields, field, rec)
		if len(fields) == cap(fields) {
			pipe.HSet(ctx, stage[stageKeys], fields...)
			fields = make([]any, 0, 2*rebuildSlice)
			if err := queue(); err != nil {
				return err
			}
		}
	}
	if len(fields) > 0 {
		pipe.HSet(ctx, stage[stageKeys], fields...)
	}
	if err := flush(); err != nil {
		return err
	}

	swapKeys := append(k[:], stage[:]...)
	status, err := rebuildScript.Run(ctx, e.client, swapKeys,
		flag(snap.Batch.Active), snap.Batch.PerUserLimit, claimed, len(snap.Pool), len(users), len(keyRecords),
		snap.LoadedSeq).Int64()
	if err != nil {
		return fail("rebuild", err)
	}
	switch status {
	case 0:
		return nil
	case statusStagingLost:
		return fmt.Errorf("redis engine: rebuild of batch %s: the staged state was lost (did Redis restart?): %w",
			snap.Batch.BatchID, coupon.ErrUnavailable)
	default:
		return refusal("rebuild", status)
	}
}

// Stats returns the pool depth, the claims handed out and not undone, and
// the loaded sequence number.
func (e *Engine) Stats(ctx context.Context, batchID string) (engine.BatchStats, error) {
	k := e.batchKeys(batchID)
	res, err := statsScript.Run(ctx, e.client, []string{k[keyMeta], k[keyPool]}).Slice()
	if err != nil {
		return engine.BatchStats{}, fail("stats", err)
	}
	r := reply{res: res}
	if status := r.int(0); status != 0 {
		if err := r.check("stats", 1); err != nil {
			return engine.BatchStats{}, err
		}
		return engine.BatchStats{}, refusal("stats", status)
	}
	s := engine.BatchStats{Claimed: r.int(1), PoolDepth: r.int(2), LoadedSeq: r.int(3)}
	return s, r.check("stats", 4)
}

// Lock takes the lease with SET NX PX and a random token. The ttl is kept
// to the millisecond, at least one.
func (e *Engine) Lock(ctx context.Context, name string, ttl time.Duration) (string, bool, error) {
	if ttl <= 0 {
		return "", false, fmt.Errorf("redis engine: lease %q: ttl %v is not positive", name, ttl)
	}
	token := newToken()
	ok, err := e.client.SetNX(ctx, e.leaseKey(name), token, max(ttl, time.Millisecond)).Result()
	if err != nil {
		return "", false, fail("lock", err)
	}
	if !ok {
		return "", false, nil
	}
	return token, true, nil
}

// Extend renews the lease for ttl from now if token holds it.
func (e *Engine) Extend(ctx context.Context, name, token string, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, fmt.Errorf("redis engine: lease %q: ttl %v is not positive", name, ttl)
	}
	n, err := extendScript.Run(ctx, e.client, []string{e.leaseKey(name)}, token, max(ttl.Milliseconds(), 1)).Int64()
	if err != nil {
		return false, fail("extend", err)
	}
	return n == 1, nil
}

// Unlock releases the lease if token holds it.
func (e *Engine) Unlock(ctx context.Context, name, token string) error {
	if err := unlockScript.Run(ctx, e.client, []string{e.leaseKey(name)}, token).Err(); err != nil {
		return fail("unlock", err)
	}
	return nil
}

// Close stops the senders of "my coupons" reads and closes the client if
// Open made it.
func (e *Engine) Close() error {
	e.closeUserReads()
	if !e.owned {
		return nil
	}
	return e.client.Close()
}

// Sizes of the slices that bound each command and script run.
const (
	settleSlice     = 10_000 // codes a Settle script
	addCodesSlice   = 4096   // codes an AddCodes script takes as arguments; more are staged
	rebuildSlice    = 1000   // pool entries or hash fields a Rebuild command
	rebuildPipeline = 64     // commands a Rebuild round trip
	stagingTTL      = 10 * time.Minute
)

// The scripts, SHA-1 computed once; Run tries EVALSHA and falls back to EVAL
// when the server's script cache lacks the script (a restart, a new node).
var (
	claimScript    = script("claim.lua")
	undoScript     = script("undo.lua")
	settleScript   = script("settle.lua")
	pendingScript  = script("pending.lua")
	setBatchScript = script("set_batch.lua")
	addCodesScript = script("add_codes.lua")
	statsScript    = script("stats.lua")
	rebuildScript  = script("rebuild.lua")
	extendScript   = script("lease_extend.lua")
	unlockScript   = script("lease_unlock.lua")
)

//go:embed lua/*.lua
var luaFiles embed.FS

func script(name string) *goredis.Script {
	src, err := luaFiles.ReadFile("lua/" + name)
	if err != nil {
		panic(err) // a file name above is wrong
	}
	return goredis.NewScript(string(src))
}

// batchKeys are a batch's keys in the order the scripts take them.
type batchKeys [6]string

const (
	keyMeta = iota
	keyPool
	keyUsers
	keyKeys
	keyPending
	keyPendingInfo
)

func (e *Engine) batchKeys(batchID string) batchKeys {
	p := e.prefix + ":{" + batchID + "}:"
	return batchKeys{p + "meta", p + "pool", p + "users", p + "keys", p + "pending", p + "pending:info"}
}

// load returns the staging list of one large AddCodes, in the batch's hash tag.
func (k batchKeys) load(token string) string {
	return strings.TrimSuffix(k[keyMeta], "meta") + "load:" + token
}

// stagingKeys are where a Rebuild loads a batch before the swap.
type stagingKeys [4]string

const (
	stageMarker = iota
	stagePool
	stageUsers
	stageKeys
)

// staging returns the staging keys of one Rebuild, in the batch's hash tag.
func (k batchKeys) staging(token string) stagingKeys {
	p := strings.TrimSuffix(k[keyMeta], "meta") + "rebuild:" + token + ":"
	return stagingKeys{p + "marker", p + "pool", p + "users", p + "keys"}
}

func (e *Engine) leaseKey(name string) string {
	return e.prefix + ":lease:{" + name + "}"
}

// poolEntry is a pool list element: the amount, which holds no colon, then
// the code, which may.
func poolEntry(c engine.PoolCode) string {
	return strconv.FormatInt(c.Amount, 10) + ":" + c.Code
}

// keyField is the field of an idempotency key in the keys hash.
func keyField(user, key string) string {
	return strconv.Itoa(len(user)) + ":" + user + key
}

// record joins fields as the scripts' decode reads them: "<length>:<bytes>"
// each.
func record(fields ...string) string {
	var b []byte
	for _, f := range fields {
		b = strconv.AppendInt(b, int64(len(f)), 10)
		b = append(b, ':')
		b = append(b, f...)
	}
	return string(b)
}

// userState is the users hash value of distinct sequence numbers ≥ 1: the
// highest, then the missing ones below it.
func userState(seqs []int) string {
	high := slices.Max(seqs)
	b := strconv.AppendInt(nil, int64(high), 10)
	held := make(map[int]bool, len(seqs))
	for _, s := range seqs {
		held[s] = true
	}
	for s := 1; s < high; s++ {
		if !held[s] {
			b = append(b, ',')
			b = strconv.AppendInt(b, int64(s), 10)
		}
	}
	return string(b)
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// refusal is the error of a script's refusal status.
func refusal(op string, status int64) error {
	switch status {
	case statusUnknownBatch:
		return engine.ErrUnknownBatch
	case statusNotClaimable:
		return engine.ErrNotClaimable
	case statusLimitReached:
		return engine.ErrLimitReached
	case statusSoldOut:
		return engine.ErrSoldOut
	default:
		return fmt.Errorf("redis engine: %s: unexpected script status %d", op, status)
	}
}

// fail wraps an error of the client. Redis answering that it cannot serve
// now, and every failure to reach it, wrap coupon.ErrUnavailable; any other
// error reply of Redis (a bug, such as a script error) does not.
func fail(op string, err error) error {
	var redisErr goredis.Error
	if errors.As(err, &redisErr) && !transient(err) {
		return fmt.Errorf("redis engine: %s: %w", op, err)
	}
	return fmt.Errorf("redis engine: %s: %w: %w", op, coupon.ErrUnavailable, err)
}

func transient(err error) bool {
	return goredis.IsLoadingError(err) || goredis.IsClusterDownError(err) || goredis.IsTryAgainError(err) ||
		goredis.IsMasterDownError(err) || goredis.IsReadOnlyError(err) || goredis.IsMaxClientsError(err) ||
		goredis.IsOOMError(err)
}

// reply reads a script's array reply, remembering the first element that
// is missing or of the wrong type.
type reply struct {
	res []any
	err error
}

func (r *reply) at(i int) any {
	if i >= len(r.res) {
		r.fail(i, "missing")
		return nil
	}
	return r.res[i]
}

func (r *reply) int(i int) int64 {
	v, ok := r.at(i).(int64)
	if !ok {
		r.fail(i, "not an integer")
	}
	return v
}

func (r *reply) string(i int) string {
	v, ok := r.at(i).(string)
	if !ok {
		r.fail(i, "not a string")
	}
	return v
}

// parsedInt reads an integer sent as a string.
func (r *reply) parsedInt(i int) int64 {
	v, err := strconv.ParseInt(r.string(i), 10, 64)
	if err != nil {
		r.fail(i, "not a decimal integer")
	}
	return v
}

func (r *reply) amount(i int) int64 { return r.parsedInt(i) }

// score reads a sorted set score holding whole microseconds.
func (r *reply) score(i int) int64 {
	f, err := strconv.ParseFloat(r.string(i), 64)
	if err != nil || f != math.Trunc(f) {
		r.fail(i, "not a whole score")
	}
	return int64(f)
}

func (r *reply) fail(i int, what string) {
	if r.err == nil {
		r.err = fmt.Errorf("element %d of %v is %s", i, r.res, what)
	}
}

// check returns the first error met, or an error if the reply does not have
// n elements.
func (r *reply) check(op string, n int) error {
	if r.err == nil && len(r.res) != n {
		r.err = fmt.Errorf("%d elements, want %d", len(r.res), n)
	}
	if r.err != nil {
		return fmt.Errorf("redis engine: %s: unexpected script reply: %w", op, r.err)
	}
	return nil
}
