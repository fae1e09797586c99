package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	goredis "github.com/redis/go-redis/v9"

	"github.com/coupond/coupond/bus"
	"github.com/coupond/coupond/internal/backendtest"
	"github.com/coupond/coupond/store/sqlite"
)

// SIGTERM in the middle of a claim storm: the process stops accepting,
// finishes the requests in flight, commits the claims queued, relays the
// outbox, releases its leases and exits 0. Every claim it acknowledged is in
// the store with its event on the bus, and every code is claimed or still in
// the pool.
func TestSIGTERMDuringAClaimStormLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildCoupond(t)
	for _, setup := range []struct {
		name  string
		redis bool // the engine in Redis, where leases are visible after exit
	}{{name: "embedded"}, {name: "redis", redis: true}} {
		t.Run(setup.name, func(t *testing.T) {
			t.Parallel()
			env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
			var rdb *goredis.Client
			prefix := backendtest.Name("sigterm")
			if setup.redis {
				r := backendtest.RedisServer(t)
				env = append(env, "COUPOND_REDIS_URL=redis://"+r.Addr()+"/0", "COUPOND_REDIS_PREFIX="+prefix)
				rdb = goredis.NewClient(&goredis.Options{Addr: r.Addr()})
				defer rdb.Close()
			}
			stormAndTerminate(t, bin, env, rdb, prefix)
		})
	}
}

func stormAndTerminate(t *testing.T, bin string, env []string, rdb *goredis.Client, prefix string) {
	dir := t.TempDir()
	const token, total = "sigterm-token", 4000
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(env,
		"COUPOND_ADDR=127.0.0.1:0", "COUPOND_DATA_DIR="+dir, "COUPOND_ADMIN_TOKEN="+token,
		"COUPOND_LOG_FORMAT=json", "COUPOND_LOG_LEVEL=info", "COUPOND_SQLITE_SYNCHRONOUS=normal",
		"COUPOND_SHUTDOWN_TIMEOUT=60s")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	logs := &lockedBuffer{}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			logs.WriteLine(line)
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "coupond serving" {
				addr <- rec.Addr
			}
		}
		exited <- cmd.Wait()
	}()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	}()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-exited:
		t.Fatalf("coupond exited at start: %v\n%s", err, logs)
	case <-time.After(60 * time.Second):
		t.Fatalf("coupond did not start\n%s", logs)
	}

	c := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	call := func(method, path string, body any) (int, map[string]any, error) {
		var r io.Reader
		if body != nil {
			raw, _ := json.Marshal(body)
			r = bytes.NewReader(raw)
		}
		req, _ := http.NewRequest(method, base+path, r)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out, nil
	}
	status, b, err := call("POST", "/v1/batches", map[string]any{
		"name": "storm", "total_quantity": total, "per_user_limit": 1,
		"validity": map[string]any{"days": 7}, "amount": map[string]any{"type": "fixed", "value": 100},
	})
	if err != nil || status != 201 {
		t.Fatalf("create batch: %d %v %v", status, b, err)
	}
	batchID := b["id"].(string)
	if status, b, err = call("POST", "/v1/batches/"+batchID+"/publish", nil); err != nil || status != 200 {
		t.Fatalf("publish: %d %v %v", status, b, err)
	}

	var (
		mu       sync.Mutex
		acked    = map[string]string{} // claim id → code
		next     atomic.Int64
		signaled atomic.Bool
		wg       sync.WaitGroup
	)
	for range 48 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next.Add(1)
				if n > total {
					return
				}
				status, out, err := call("POST", "/v1/batches/"+batchID+"/claims", map[string]any{"user_id": fmt.Sprint("u", n)})
				switch {
				case err != nil:
					if !signaled.Load() {
						t.Errorf("claim before SIGTERM: %v", err)
					}
					return // the listener is closed: the storm is over for this client
				case status == 201:
					mu.Lock()
					acked[out["id"].(string)] = out["code"].(string)
					count := len(acked)
					mu.Unlock()
					if count == 300 && signaled.CompareAndSwap(false, true) {
						if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
							t.Errorf("SIGTERM: %v", err)
						}
					}
				default:
					t.Errorf("claim: %d %v", status, out)
					return
				}
			}
		}()
	}
	wg.Wait()
	if !signaled.Load() {
		t.Fatal("the storm ended before SIGTERM")
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("coupond exited with %v after SIGTERM\n%s", err, logs)
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("coupond did not exit after SIGTERM\n%s", logs)
	}
	if !strings.Contains(logs.String(), `"msg":"shutting down"`) {
		t.Fatalf("no shutdown in the logs:\n%s", logs)
	}
	t.Logf("%d claims acknowledged; SIGTERM after 300", len(acked))

	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(dir, "coupond.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for id, code := range acked {
		c, err := st.GetClaim(ctx, id)
		if err != nil {
			t.Fatalf("acknowledged claim %s is not in the store: %v", id, err)
		}
		if c.Code != code {
			t.Fatalf("claim %s holds %s, acknowledged with %s", id, c.Code, code)
		}
	}
	claimed, err := st.ClaimedCount(ctx, batchID)
	if err != nil {
		t.Fatal(err)
	}
	if claimed != int64(len(acked)) {
		t.Fatalf("%d claims in the store, %d acknowledged: an in-flight request was cut off", claimed, len(acked))
	}
	snap, err := st.Snapshot(ctx, batchID)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(snap.Pool))+claimed != total {
		t.Fatalf("pool %d + claimed %d != %d: codes stranded", len(snap.Pool), claimed, total)
	}
	if pending, err := st.PendingEvents(ctx, 10); err != nil || len(pending) != 0 {
		t.Fatalf("%d events left in the outbox (%v): the relay was not flushed", len(pending), err)
	}

	// The embedded NATS server kept the stream in the data dir.
	b2, err := bus.Open(ctx, bus.Config{StoreDir: filepath.Join(dir, "nats")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	cons, err := b2.JetStream().OrderedConsumer(ctx, b2.StreamName(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{b2.Subject(bus.TypeClaimCreated)},
	})
	if err != nil {
		t.Fatal(err)
	}
	published := map[string]bool{}
	for len(published) < len(acked) {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("%d of %d claim events on the bus: %v", len(published), len(acked), err)
		}
		var env struct {
			Data struct {
				ClaimID string `json:"claim_id"`
			} `json:"data"`
		}
		if err := json.Unmarshal(msg.Data(), &env); err != nil {
			t.Fatal(err)
		}
		published[env.Data.ClaimID] = true
	}
	for id := range acked {
		if !published[id] {
			t.Fatalf("claim %s has no claim.created event", id)
		}
	}

	if rdb != nil {
		keys, err := rdb.Keys(ctx, prefix+":lease:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 0 {
			t.Fatalf("leases still held after exit: %v", keys)
		}
	}
}

// buildCoupond builds this command into a temporary directory.
func buildCoupond(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "coupond")
	out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) WriteLine(s string) {
	l.mu.Lock()
	l.b.WriteString(s + "\n")
	l.mu.Unlock()
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
