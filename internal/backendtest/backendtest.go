// Package backendtest gives tests real backends of their own: a schema in the
// machine's PostgreSQL, and private redis-server and nats-server processes on
// spare ports that a test may stop, flush and restart without disturbing
// other tests. When a backend is missing a test skips with a clear message,
// except under CI=true, where it fails.
package backendtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Unavailable skips the test, or fails it under CI=true, because a backend
// it needs is missing.
func Unavailable(t testing.TB, what string, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required in CI and is not available: %v", what, err)
	}
	t.Skipf("%s is not available (%v); skipping. Start it, or run in CI where it is required.", what, err)
}

// Name returns a short random name with prefix, for schemas, streams and key prefixes.
func Name(prefix string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// PostgresURL is the machine's PostgreSQL, from COUPOND_TEST_POSTGRES_URL.
func PostgresURL() string {
	if u := os.Getenv("COUPOND_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// PostgresSchema creates a fresh schema, drops it when the test ends, and
// returns a URL whose connections use it (search_path).
func PostgresSchema(t testing.TB) string {
	t.Helper()
	base := PostgresURL()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		Unavailable(t, "PostgreSQL at "+base, err)
	}
	schema := Name("t_")
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		conn.Close(ctx)
		t.Fatalf("create schema: %v", err)
	}
	conn.Close(ctx)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, base); err == nil {
			_, _ = conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
			conn.Close(ctx)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Process is a backend server run by a test.
type Process struct {
	t    testing.TB
	name string
	Port int
	args []string
	cmd  *exec.Cmd
}

// Addr is host:port of the process.
func (p *Process) Addr() string { return "127.0.0.1:" + strconv.Itoa(p.Port) }

// Start starts the process (again) on its port and waits until it accepts connections.
func (p *Process) Start() {
	p.t.Helper()
	if p.cmd != nil {
		return
	}
	cmd := exec.Command(p.name, p.args...)
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	p.cmd = cmd
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.Addr(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s did not listen on %s: %v", p.name, p.Addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the process (SIGKILL: a crash, not a shutdown) and waits for it.
func (p *Process) Stop() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	p.cmd = nil
}

func start(t testing.TB, name string, args func(port int) []string) *Process {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/bin"} {
			if _, serr := os.Stat(filepath.Join(dir, name)); serr == nil {
				path, err = filepath.Join(dir, name), nil
				break
			}
		}
	}
	if err != nil {
		Unavailable(t, name, err)
	}
	p := &Process{t: t, name: path, Port: FreePort(t)}
	p.args = args(p.Port)
	p.Start()
	t.Cleanup(p.Stop)
	return p
}

// RedisServer starts a private redis-server that keeps nothing on disk: a
// restart (Stop, Start) loses everything, as a Redis restart does here.
func RedisServer(t testing.TB) *Process {
	t.Helper()
	dir := t.TempDir()
	return start(t, "redis-server", func(port int) []string {
		return []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir}
	})
}

// NATSServer starts a private nats-server with JetStream whose storage
// survives a restart (Stop, Start).
func NATSServer(t testing.TB) *Process {
	t.Helper()
	dir := t.TempDir()
	return start(t, "nats-server", func(port int) []string {
		return []string{"-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", filepath.Join(dir, "js")}
	})
}

// FreePort returns a TCP port nobody listens on now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// String describes a process for logs.
func (p *Process) String() string { return fmt.Sprintf("%s on %s", p.name, p.Addr()) }
