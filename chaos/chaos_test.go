package chaos_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coupond/coupond/internal/backendtest"
)

const token = "chaos-token"

// instance is one coupond process on a fixed port, so a restart serves the
// same address.
type instance struct {
	t    *testing.T
	bin  string
	env  []string
	port int
	cmd  *exec.Cmd
	log  *os.File
}

func (in *instance) base() string { return "http://127.0.0.1:" + strconv.Itoa(in.port) }

func (in *instance) start() {
	in.t.Helper()
	cmd := exec.Command(in.bin, "serve")
	cmd.Env = append(in.env, "COUPOND_ADDR=127.0.0.1:"+strconv.Itoa(in.port), "COUPOND_DATA_DIR="+in.t.TempDir())
	cmd.Stdout, cmd.Stderr = in.log, in.log
	if err := cmd.Start(); err != nil {
		in.t.Fatal(err)
	}
	in.cmd = cmd
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(in.base() + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			in.t.Fatalf("coupond on %d did not start: %v (log %s)", in.port, err, in.log.Name())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill is kill -9: nothing queued is committed, nothing is released.
func (in *instance) kill() {
	if in.cmd != nil {
		_ = in.cmd.Process.Signal(syscall.SIGKILL)
		_ = in.cmd.Wait()
		in.cmd = nil
	}
}

func (in *instance) stop() {
	if in.cmd != nil {
		_ = in.cmd.Process.Signal(syscall.SIGTERM)
		_ = in.cmd.Wait()
		in.cmd = nil
	}
}

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}

func call(method, url string, body any) (int, map[string]any, error) {
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, url, bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, nil
}

// load claims as fast as its workers can, each claim for a new user,
// through every instance in turn, and keeps the ids of the claims it saw
// acknowledged.
type load struct {
	mu        sync.Mutex
	acked     []string
	refused   map[int]int // status → count; 0: a transport error
	n         atomic.Int64
	stop      chan struct{}
	wg        sync.WaitGroup
	instances []*instance
	batchID   string
}

func (l *load) run(workers int) {
	l.stop = make(chan struct{})
	l.refused = map[int]int{}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := w; ; i += workers {
				select {
				case <-l.stop:
					return
				default:
				}
				in := l.instances[i%len(l.instances)]
				user := fmt.Sprintf("u%d-%d", w, l.n.Add(1))
				status, out, err := call("POST", in.base()+"/v1/batches/"+l.batchID+"/claims", map[string]any{"user_id": user})
				l.mu.Lock()
				switch {
				case err == nil && status == 201:
					l.acked = append(l.acked, out["id"].(string))
				case err != nil:
					l.refused[0]++
				default:
					l.refused[status]++
				}
				l.mu.Unlock()
				if err != nil || status >= 500 {
					time.Sleep(20 * time.Millisecond) // a client backs off while the service recovers
				}
			}
		}()
	}
}

func (l *load) halt() {
	close(l.stop)
	l.wg.Wait()
}

func (l *load) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// Under a steady claim load against two instances, in turn: kill -9 an
// instance, restart Redis (losing its data), stop NATS, crash PostgreSQL.
// Every acknowledged claim is then in the store, the outbox drains, and
// `coupond audit` is clean.
func TestFaultsLoseNoAcknowledgedClaim(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs private servers")
	}
	rounds := 1
	if v, err := strconv.Atoi(os.Getenv("COUPOND_CHAOS_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	pg := backendtest.PostgresServer(t)
	rd := backendtest.RedisServer(t)
	nt := backendtest.NATSServer(t)
	bin := build(t)
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(),
		"COUPOND_POSTGRES_URL=" + pg.URL(), "COUPOND_REDIS_URL=redis://" + rd.Addr() + "/0", "COUPOND_NATS_URL=nats://" + nt.Addr(),
		"COUPOND_ADMIN_TOKEN=" + token, "COUPOND_LOG_FORMAT=json", "COUPOND_LOG_LEVEL=warn", "COUPOND_SHUTDOWN_TIMEOUT=20s"}
	var instances []*instance
	for i := range 2 {
		f, err := os.Create(filepath.Join(t.TempDir(), fmt.Sprintf("coupond-%d.log", i)))
		if err != nil {
			t.Fatal(err)
		}
		in := &instance{t: t, bin: bin, env: env, port: backendtest.FreePort(t), log: f}
		in.start()
		t.Cleanup(in.stop)
		instances = append(instances, in)
	}

	status, b, err := call("POST", instances[0].base()+"/v1/batches", map[string]any{
		"name": "chaos", "total_quantity": 1_000_000, "per_user_limit": 1,
		"validity": map[string]any{"days": 7}, "amount": map[string]any{"type": "fixed", "value": 100},
	})
	if err != nil || status != 201 {
		t.Fatalf("create batch: %d %v %v", status, b, err)
	}
	batchID := b["id"].(string)
	if status, b, err = call("POST", instances[0].base()+"/v1/batches/"+batchID+"/publish", nil); err != nil || status != 200 {
		t.Fatalf("publish: %d %v %v", status, b, err)
	}

	l := &load{instances: instances, batchID: batchID}
	l.run(8)
	steady := func(what string) {
		// The load goes on until claims are acknowledged again after the fault.
		before := l.ackedCount()
		deadline := time.Now().Add(90 * time.Second)
		for l.ackedCount() < before+200 {
			if time.Now().After(deadline) {
				l.halt()
				t.Fatalf("after %s, claims were not acknowledged again within 90 s (refusals %v)", what, l.refused)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	steady("the start")
	faults := []struct {
		name   string
		inject func()
	}{
		{"kill -9 of an instance", func() { instances[1].kill(); time.Sleep(time.Second); instances[1].start() }},
		{"a Redis restart (empty)", func() { rd.Stop(); time.Sleep(time.Second); rd.Start() }},
		{"NATS stopped for 3 s", func() { nt.Stop(); time.Sleep(3 * time.Second); nt.Start() }},
		{"a PostgreSQL crash", func() { pg.Crash(); time.Sleep(time.Second); pg.Start() }},
	}
	ctx := context.Background()
	// check: every claim acknowledged so far is in the store, and the audit
	// (which the load does not disturb) is clean.
	check := func(after string) (lost int) {
		t.Helper()
		l.mu.Lock()
		acked := append([]string(nil), l.acked...)
		l.mu.Unlock()
		conn, err := pgx.Connect(ctx, pg.URL())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var found int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM claims WHERE id = ANY($1)", acked).Scan(&found); err != nil {
			t.Fatal(err)
		}
		if lost = len(acked) - found; lost != 0 {
			t.Errorf("after %s: %d of %d acknowledged claims are not in the store", after, lost, len(acked))
		}
		cmd := exec.Command(bin, "audit")
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("after %s: coupond audit: %v\n%s", after, err, out)
		}
		return lost
	}
	survived, lost := 0, 0
	for round := range rounds {
		for _, f := range faults {
			t.Logf("round %d: %s (%d claims acknowledged so far)", round+1, f.name, l.ackedCount())
			f.inject()
			steady(f.name)
			lost += check(f.name)
			survived++
		}
	}
	l.halt()
	lost += check("the end of the load")

	// The outbox drains once NATS and every instance are up.
	conn, err := pgx.Connect(ctx, pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	deadline := time.Now().Add(60 * time.Second)
	for {
		var pending int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM outbox WHERE published_at IS NULL").Scan(&pending); err != nil {
			t.Fatal(err)
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events still unpublished a minute after the faults", pending)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("faults survived: %d; claims acknowledged: %d; claims lost: %d; refusals by status (0: transport error): %v",
		survived, len(l.acked), lost, l.refused)
}

func build(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "coupond")
	if out, err := exec.Command(goBin, "build", "-o", bin, "../cmd/coupond").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
