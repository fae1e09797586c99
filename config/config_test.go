package config

import (
	"flag"
	"io"
	"testing"
	"time"
)

func load(t *testing.T, args, env []string) (Config, []string, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return Load(fs, args, env)
}

func TestDefaultsRunWithNoSetup(t *testing.T) {
	c, warn, err := load(t, nil, nil)
	if err != nil || len(warn) != 0 {
		t.Fatalf("err=%v warnings=%v", err, warn)
	}
	if c.Addr != "127.0.0.1:8080" || c.DataDir != "./data" || c.GroupCommit.MaxBatch != 256 ||
		c.SQLite.Synchronous != "full" || c.NATS.URL != "" || c.ShutdownTimeout != 30*time.Second {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestFlagsBeatEnvironmentBeatsDefaults(t *testing.T) {
	c, warn, err := load(t, []string{"-addr", "127.0.0.1:9999"},
		[]string{"COUPOND_ADDR=127.0.0.1:7777", "COUPOND_DATA_DIR=/tmp/x", "COUPOND_GROUP_COMMIT_MAX=1", "COUPOND_BOGUS=1", "PATH=/bin"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:9999" || c.DataDir != "/tmp/x" || c.GroupCommit.MaxBatch != 1 {
		t.Fatalf("got %+v", c)
	}
	if len(warn) != 1 || warn[0] != "unknown environment variable COUPOND_BOGUS ignored" {
		t.Fatalf("warnings = %v", warn)
	}
}

func TestBadValuesAreRefused(t *testing.T) {
	for _, tc := range []struct {
		args, env []string
	}{
		{env: []string{"COUPOND_GROUP_COMMIT_MAX=lots"}},
		{env: []string{"COUPOND_LOG_FORMAT=xml"}},
		{args: []string{"-shutdown-timeout", "soon"}},
		{args: []string{"-group-commit-max", "0"}},
		{args: []string{"-no-such-flag"}},
	} {
		if _, _, err := load(t, tc.args, tc.env); err == nil {
			t.Errorf("args %v env %v: no error", tc.args, tc.env)
		}
	}
}
