// Package redistest gives tests a Redis: the shared one the environment
// names, or throwaway servers and clusters that a test starts and that are
// killed when it ends. Without a Redis a test is skipped, except under
// CI=true, where it fails: CI must not pass by skipping.
package redistest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// DefaultURL is the shared test Redis when COUPOND_TEST_REDIS_URL is not set.
const DefaultURL = "redis://127.0.0.1:6379/0"

// URL returns the URL of the shared test Redis, COUPOND_TEST_REDIS_URL or
// DefaultURL, once it answers a PING. Tests sharing it must keep to keys of
// their own.
func URL(tb testing.TB) string {
	tb.Helper()
	url := os.Getenv("COUPOND_TEST_REDIS_URL")
	if url == "" {
		url = DefaultURL
	}
	opts, err := goredis.ParseURL(url)
	if err != nil {
		tb.Fatalf("COUPOND_TEST_REDIS_URL: %v", err)
	}
	if err := ping(opts, 2*time.Second); err != nil {
		unavailable(tb, "no Redis at %s (set COUPOND_TEST_REDIS_URL): %v", url, err)
	}
	return url
}

// Prefix returns a key prefix of the test's own on the shared test Redis at
// url ("<name><random>"), and deletes every key under it ("<prefix>:…") when
// the test ends, so that the shared Redis does not fill up with the keys of
// finished tests (risk windows, for one, live for days).
func Prefix(tb testing.TB, url, name string) string {
	tb.Helper()
	prefix := name + strconv.FormatUint(rand.Uint64(), 36)
	tb.Cleanup(func() {
		opts, err := goredis.ParseURL(url)
		if err != nil {
			tb.Errorf("redistest: %v", err)
			return
		}
		c := goredis.NewClient(opts)
		defer c.Close()
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		var keys []string
		flush := func() {
			if len(keys) > 0 {
				if err := c.Unlink(ctx, keys...).Err(); err != nil {
					tb.Errorf("redistest: delete the keys of %s: %v", prefix, err)
				}
				keys = keys[:0]
			}
		}
		for iter.Next(ctx) {
			if keys = append(keys, iter.Val()); len(keys) == 1000 {
				flush()
			}
		}
		flush()
		if err := iter.Err(); err != nil {
			tb.Errorf("redistest: scan the keys of %s: %v", prefix, err)
		}
	})
	return prefix
}

// Server is a redis-server of a test's own, with nothing on disk.
type Server struct {
	Port int
	tb   testing.TB
	dir  string
	args []string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

// StartServer starts a redis-server on a free port of 127.0.0.1 and kills
// it when the test ends.
func StartServer(tb testing.TB) *Server {
	tb.Helper()
	return startServer(tb, tb.TempDir(), false)
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// URL is the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Stop kills the server; it may be started again with Start.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Start starts a stopped server again on the same port, empty: a Redis that
// restarted and kept nothing.
func (s *Server) Start() {
	s.tb.Helper()
	if s.cmd != nil {
		s.tb.Fatalf("redis-server on port %d is running", s.Port)
	}
	if err := s.start(); err != nil {
		s.tb.Fatalf("restart: %v", err)
	}
}

func startServer(tb testing.TB, dir string, cluster bool) *Server {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		unavailable(tb, "redis-server is not installed: %v", err)
	}
	var lastErr error
	for range 10 {
		port, err := freePort(cluster)
		if err != nil {
			tb.Fatal(err)
		}
		s := &Server{Port: port, tb: tb, dir: dir}
		s.args = []string{bin,
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", dir,
		}
		if cluster {
			s.args = append(s.args, "--cluster-enabled", "yes",
				"--cluster-config-file", filepath.Join(dir, "nodes-"+strconv.Itoa(port)+".conf"))
		}
		if lastErr = s.start(); lastErr == nil {
			tb.Cleanup(s.Stop)
			return s
		}
		// Most likely another process took the port meanwhile: try another.
	}
	tb.Fatalf("redis-server did not start: %v", lastErr)
	return nil
}

func (s *Server) start() error {
	log, err := os.OpenFile(filepath.Join(s.dir, "redis-"+strconv.Itoa(s.Port)+".log"),
		os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(s.args[0], s.args[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := ping(&goredis.Options{Addr: s.Addr()}, time.Second)
		if err == nil {
			s.cmd, s.done = cmd, done
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server on port %d exited (log in %s)", s.Port, log.Name())
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-server on port %d does not answer: %v", s.Port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Cluster is a Redis Cluster of masters without replicas, of a test's own.
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts masters redis-servers in cluster mode, joins them
// with redis-cli --cluster create, waits until every node reports
// cluster_state:ok, and kills them when the test ends.
func StartCluster(tb testing.TB, masters int) *Cluster {
	tb.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		unavailable(tb, "redis-cli is not installed: %v", err)
	}
	dir := tb.TempDir()
	c := &Cluster{}
	args := []string{"--cluster", "create"}
	for range masters {
		n := startServer(tb, dir, true)
		c.Nodes = append(c.Nodes, n)
		args = append(args, n.Addr())
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}

	deadline := time.Now().Add(30 * time.Second)
	for _, n := range c.Nodes {
		client := goredis.NewClient(&goredis.Options{Addr: n.Addr()})
		for {
			info, err := client.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				_ = client.Close()
				tb.Fatalf("cluster node %s is not ok: %v\n%s", n.Addr(), err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = client.Close()
	}
	return c
}

// URL names the first node and the others as addr options, the form of
// go-redis's ParseClusterURL.
func (c *Cluster) URL() string {
	var b strings.Builder
	b.WriteString("redis://" + c.Nodes[0].Addr())
	for i, n := range c.Nodes[1:] {
		if i == 0 {
			b.WriteString("?")
		} else {
			b.WriteString("&")
		}
		b.WriteString("addr=" + n.Addr())
	}
	return b.String()
}

// freePort returns a port of 127.0.0.1 that nothing listens on, and for a
// cluster node one whose bus port, 10000 higher, is free too.
func freePort(cluster bool) (int, error) {
	for range 100 {
		port := 20000 + rand.IntN(20000)
		if !cluster {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return 0, err
			}
			port = l.Addr().(*net.TCPAddr).Port
			_ = l.Close()
			return port, nil
		}
		if portFree(port) && portFree(port+10000) {
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port pair found")
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// ping checks that the Redis of o answers, with no retries and timeout on
// each step.
func ping(o *goredis.Options, timeout time.Duration) error {
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries = timeout, timeout, timeout, -1
	client := goredis.NewClient(o)
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return client.Ping(ctx).Err()
}

// unavailable skips the test, or fails it under CI=true.
func unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf(format, args...)
	}
	tb.Skipf(format, args...)
}
