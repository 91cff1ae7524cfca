package proxyhealth_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/probe"
)

// noLeak fails the test when a goroutine outlives a failed Open (the
// dead-letter throttle is protoactor's own; see TestMain).
func noLeak(t *testing.T) {
	t.Helper()
	goleak.VerifyNone(t, goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
		goleak.IgnoreCurrent())
}

// TestValidateRejectsWhatOpenRejects: every configuration Open refuses,
// Validate refuses first, with a message naming the field; and the failed
// Open leaves nothing running.
func TestValidateRejectsWhatOpenRejects(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	badHealth := events.DefaultConfig()
	badHealth.Interval = 0
	cases := []struct {
		name  string
		cfg   proxyhealth.Config
		field string
	}{
		{"concurrency", proxyhealth.Config{Concurrency: -1}, "concurrency"},
		{"snapshot_every", proxyhealth.Config{SnapshotEvery: -5}, "snapshot_every"},
		{"checkpoint_every", proxyhealth.Config{CheckpointEvery: 10_000_000}, "checkpoint_every = 10ms; must be at least 1s"},
		{"subscriber_buffer", proxyhealth.Config{SubscriberBuffer: -1}, "subscriber_buffer"},
		{"pool threshold", proxyhealth.Config{PoolThreshold: 150}, "threshold"},
		{"pool margin", proxyhealth.Config{PoolMargin: 101}, "margin"},
		{"webhook URL", proxyhealth.Config{Webhooks: []proxyhealth.WebhookConfig{{URL: "ftp://hooks.example/x"}}}, "webhook 0"},
		{"webhook type", proxyhealth.Config{Webhooks: []proxyhealth.WebhookConfig{{URL: "http://127.0.0.1:1/", Types: []string{"everything"}}}}, "everything"},
		{"data dir is a file", proxyhealth.Config{DataDir: file}, "data_dir"},
		{"source name", proxyhealth.Config{Sources: []proxyhealth.SourceConfig{{Name: "no spaces"}}}, "no spaces"},
		{"source health", proxyhealth.Config{Sources: []proxyhealth.SourceConfig{{Name: "a", Health: badHealth}}}, "interval"},
		{"source probe", proxyhealth.Config{Sources: []proxyhealth.SourceConfig{{Name: "a", Probe: probe.Config{TargetURL: "ftp://x/"}}}}, "TargetURL"},
		{"proxy URL", proxyhealth.Config{Sources: []proxyhealth.SourceConfig{{Name: "a", Proxies: []string{"gopher://127.0.0.1:1"}}}}, "proxies[0]"},
		{"entry URL", proxyhealth.Config{Sources: []proxyhealth.SourceConfig{{Name: "a", Proxies: []string{"127.0.0.1:1", "127.0.0.1:2"},
			Entries: []proxyhealth.ProxyEntry{{URL: "127.0.0.1:3"}, {URL: "gopher://127.0.0.1:4"}}}}}, `source "a" entries[1]`},
		{"entry weight", proxyhealth.Config{Sources: []proxyhealth.SourceConfig{{Name: "a", Proxies: []string{"127.0.0.1:1"},
			Entries: []proxyhealth.ProxyEntry{{URL: "127.0.0.1:3", Weight: -1}}}}}, "entries[0] (http://127.0.0.1:3)"},
		{"duplicate entry", proxyhealth.Config{Sources: []proxyhealth.SourceConfig{{Name: "a", Proxies: []string{"127.0.0.1:1"},
			Entries: []proxyhealth.ProxyEntry{{URL: "http://127.0.0.1:1"}}}}}, "twice"},
		{"duplicate source", proxyhealth.Config{Sources: []proxyhealth.SourceConfig{{Name: "a"}, {Name: "a"}}}, "twice"},
		{"duplicate proxy", proxyhealth.Config{Sources: []proxyhealth.SourceConfig{{Name: "a", Proxies: []string{"127.0.0.1:1"}}, {Name: "b", Proxies: []string{"http://127.0.0.1:1"}}}}, "twice"},
	}
	ctx := context.Background()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			verr := c.cfg.Validate()
			if verr == nil || !strings.Contains(verr.Error(), c.field) {
				t.Fatalf("Validate = %v; want an error naming %q", verr, c.field)
			}
			if !errors.Is(verr, proxyhealth.ErrBadConfig) && !errors.Is(verr, proxyhealth.ErrDuplicate) {
				t.Fatalf("Validate = %v; want ErrBadConfig or ErrDuplicate", verr)
			}
			e, err := proxyhealth.Open(ctx, c.cfg)
			if err == nil {
				_ = e.Close(ctx)
				t.Fatal("Open accepted what Validate refused")
			}
			noLeak(t)
		})
	}
}

// TestFailedOpenLeavesNothingRunning: every way Open can fail after it
// started something (journal, actor system, projections, sources) stops
// what it started.
func TestFailedOpenLeavesNothingRunning(t *testing.T) {
	ctx := context.Background()
	src := []proxyhealth.SourceConfig{{Name: "a", Health: fastHealth(), Probe: farmProbe(), Proxies: []string{"127.0.0.1:9", "127.0.0.1:7"}}}
	cases := map[string]func(t *testing.T) proxyhealth.Config{
		"journal is not a journal": func(t *testing.T) proxyhealth.Config {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, proxyhealth.JournalFile), []byte("not a bbolt file, not at all, just text"), 0o600); err != nil {
				t.Fatal(err)
			}
			return proxyhealth.Config{DataDir: dir, Sources: src}
		},
		"empty journal": func(t *testing.T) proxyhealth.Config {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, proxyhealth.JournalFile), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return proxyhealth.Config{DataDir: dir, Sources: src}
		},
		"unreadable credentials file": func(t *testing.T) proxyhealth.Config {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, proxyhealth.CredentialsFile), []byte("{not json"), 0o600); err != nil {
				t.Fatal(err)
			}
			return proxyhealth.Config{DataDir: dir, Sources: src}
		},
		"journal refuses the sources' ProxyAdded": func(t *testing.T) proxyhealth.Config {
			return proxyhealth.WithJournalOptions(proxyhealth.Config{DataDir: t.TempDir(), Sources: src},
				journal.WithCommitFault(func() error { return syscall.EIO }))
		},
		"view ahead of the journal": func(t *testing.T) proxyhealth.Config {
			dir := t.TempDir()
			cfg := proxyhealth.Config{DataDir: dir, Sources: src, Projections: []proxyhealth.ProjectionSpec{proxyhealth.SQLiteView()}}
			e := open(t, cfg)
			closeEngine(t, e)
			if err := os.Remove(filepath.Join(dir, proxyhealth.JournalFile)); err != nil {
				t.Fatal(err)
			}
			return cfg
		},
	}
	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := mk(t)
			e, err := proxyhealth.Open(ctx, cfg)
			if err == nil {
				_ = e.Close(ctx)
				t.Fatal("Open succeeded")
			}
			t.Logf("Open: %v", err)
			noLeak(t)
		})
	}
}
