package backendtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresProcess is a private PostgreSQL server of a test, which the test
// may crash and start again without touching the machine's server that
// other tests share.
type PostgresProcess struct {
	t    testing.TB
	bin  string
	dir  string
	Port int
	cred *syscall.Credential
	cmd  *exec.Cmd
}

// PostgresServer initialises a database cluster in a temporary directory
// and starts a server on a free port (as the postgres user when the test
// runs as root, which PostgreSQL refuses to run as). It skips, or fails
// under CI=true, when PostgreSQL's programs are not installed.
func PostgresServer(t testing.TB) *PostgresProcess {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(bins) == 0 {
		Unavailable(t, "PostgreSQL's programs (/usr/lib/postgresql/*/bin)", os.ErrNotExist)
	}
	binDir := filepath.Dir(bins[len(bins)-1])
	// Not t.TempDir: its parent is private to root, and the server may run
	// as the postgres user.
	dir, err := os.MkdirTemp("", "coupond-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	p := &PostgresProcess{t: t, bin: filepath.Join(binDir, "postgres"), dir: dir, Port: FreePort(t)}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root needs the postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(p.dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(p.dir, "data")
	initdb := exec.Command(filepath.Join(binDir, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	p.Start()
	t.Cleanup(p.Stop)
	return p
}

// URL is the server's database postgres.
func (p *PostgresProcess) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.Port)
}

// Start starts the server and waits until it answers a query (after a
// crash, that is after its recovery).
func (p *PostgresProcess) Start() {
	p.t.Helper()
	if p.cmd != nil {
		return
	}
	cmd := exec.Command(p.bin, "-D", filepath.Join(p.dir, "data"), "-p", strconv.Itoa(p.Port), "-k", p.dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start postgres: %v", err)
	}
	p.cmd = cmd
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := contextWithTimeout(time.Second)
		conn, err := pgx.Connect(ctx, p.URL())
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("postgres did not answer on port %d: %v", p.Port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Crash stops the server the way a crash does (an immediate shutdown: no
// checkpoint, the next start recovers from the WAL) and waits for it.
func (p *PostgresProcess) Crash() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
	_ = p.cmd.Wait()
	p.cmd = nil
}

// Stop is Crash; a test's data is thrown away with its directory.
func (p *PostgresProcess) Stop() { p.Crash() }

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
