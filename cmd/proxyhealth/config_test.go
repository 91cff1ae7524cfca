package main

import (
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/probe"
)

// loadArgs parses run's flags and loads the configuration.
func loadArgs(t *testing.T, env map[string]string, args ...string) (daemonConfig, error) {
	t.Helper()
	fs := newFlagSet("run", runUsage, runExamples, nil, nil)
	var rs runSettings
	rs.register(fs)
	if _, code, ok := fs.parse(args); !ok {
		t.Fatalf("parse %q: exit %d", args, code)
	}
	return rs.load(func(k string) string { return env[k] })
}

func TestExampleConfig(t *testing.T) {
	dc, err := loadArgs(t, nil, "--config", "testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if dc.listen != "127.0.0.1:9480" || dc.engine.DataDir != "testdata/proxyhealth-data" || dc.engine.Retention != 7*24*time.Hour ||
		dc.engine.Concurrency != 1000 || dc.logFormat != "text" {
		t.Errorf("top level: %+v", dc)
	}
	if len(dc.engine.Sources) != 3 {
		t.Fatalf("%d sources, want residential, datacenter and default", len(dc.engine.Sources))
	}
	res, dcs, def := dc.engine.Sources[0], dc.engine.Sources[1], dc.engine.Sources[2]
	if res.Name != "residential" || len(res.Proxies) != 4 || res.Health.Interval != time.Minute ||
		res.Probe.TargetURL != "https://example.com/" || res.Probe.LatencyCeiling != 2*time.Second {
		t.Errorf("residential: %+v", res)
	}
	if dcs.Probe.Timeout != 3*time.Second || dcs.Health.UnhealthyThreshold != 2 || len(dcs.Probe.ExpectedStatus) != 2 || len(dcs.Proxies) != 2 {
		t.Errorf("datacenter: %+v", dcs)
	}
	// The example documents the defaults: the default source equals the
	// built-in defaults.
	want := events.DefaultConfig()
	if def.Name != "default" || def.Health != want {
		t.Errorf("default source health %+v\nwant %+v", def.Health, want)
	}
	if def.Probe.TargetURL != probe.DefaultTargetURL || def.Probe.Timeout != probe.DefaultTimeout || def.Probe.Method != "HEAD" {
		t.Errorf("default source probe %+v", def.Probe)
	}
}

func TestFlagsOverrideConfig(t *testing.T) {
	dc, err := loadArgs(t, nil, "--config", "testdata/example.yaml", "--interval", "100ms", "--timeout", "2s",
		"--check-url", "http://t.proxyhealth.test/", "--unhealthy-threshold", "7", "--healthy-threshold", "4",
		"--recovery-cooldown", "3s", "--max-recovery-attempts", "0", "--data", "/tmp/x", "--listen", "127.0.0.1:1",
		"--retention", "2d", "--concurrency", "5", "--log-format", "json")
	if err != nil {
		t.Fatal(err)
	}
	if dc.engine.DataDir != "/tmp/x" || dc.listen != "127.0.0.1:1" || dc.engine.Retention != 48*time.Hour || dc.engine.Concurrency != 5 || dc.logFormat != "json" {
		t.Errorf("top level %+v", dc)
	}
	for _, s := range dc.engine.Sources {
		h, p := s.Health, s.Probe
		if h.Interval != 100*time.Millisecond || p.Timeout != 2*time.Second || p.TargetURL != "http://t.proxyhealth.test/" ||
			h.UnhealthyThreshold != 7 || h.HealthyThreshold != 4 || h.RecoveryCooldown != 3*time.Second || h.MaxRecoveryAttempts != 0 {
			t.Errorf("source %s: %+v %+v", s.Name, h, p)
		}
	}
	if dc.engine.Sources[0].Probe.LatencyCeiling != 2*time.Second {
		t.Error("a setting no flag gives must stay from the file")
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ name, yaml, want string }{
		{"unknown.yaml", "listen: 127.0.0.1:1\nsauces: []\n", "unknown.yaml:2: field sauces not found"},
		{"baddur.yaml", "defaults:\n  interval: soon\n", "baddur.yaml:2: \"soon\" is not a duration"},
		{"badurl.yaml", "sources:\n  - name: a\n    proxies:\n      - 10.0.0.1:80\n      - gopher://10.0.0.2:70\n", "badurl.yaml:5: "},
		{"dup.yaml", "sources:\n  - name: a\n  - name: a\n", "dup.yaml:3: source \"a\" is defined twice"},
		{"badname.yaml", "sources:\n  - name: 'a b'\n", "badname.yaml:2: sources[0]: name"},
		{"syntax.yaml", "sources: [\n", "syntax.yaml"},
		{"status.yaml", "defaults:\n  expected_status: 200-199\n", "status.yaml"},
		{"fast.yaml", "defaults:\n  interval: 10ms\n", "interval"},
		{"files.yaml", "sources:\n  - name: a\n    proxy_files: [missing.txt]\n", "missing.txt: cannot read"},
		{"dupes.yaml", "sources:\n  - name: a\n    proxies: [10.0.0.1:80]\n  - name: b\n    proxies: ['http://10.0.0.1:80']\n", "appears twice"},
	} {
		path := writeFile(t, dir, c.name, c.yaml)
		_, err := loadArgs(t, nil, "--config", path)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
	// An empty file is a valid config.
	if _, err := loadArgs(t, nil, "--config", writeFile(t, dir, "empty.yaml", "")); err != nil {
		t.Errorf("empty config: %v", err)
	}
}

func TestListenNeedsToken(t *testing.T) {
	if _, err := loadArgs(t, nil, "--listen", "0.0.0.0:9480"); err == nil || !strings.Contains(err.Error(), "PROXYHEALTH_TOKEN") {
		t.Errorf("non-loopback without token: %v", err)
	}
	if _, err := loadArgs(t, nil, "--listen", ":9480"); err == nil {
		t.Error("all interfaces without token accepted")
	}
	dc, err := loadArgs(t, map[string]string{"PROXYHEALTH_TOKEN": "s3"}, "--listen", "0.0.0.0:9480")
	if err != nil || dc.token != "s3" {
		t.Errorf("token from the environment: %v %q", err, dc.token)
	}
	for _, a := range []string{"127.0.0.1:9480", "localhost:1", "[::1]:80"} {
		if !isLoopback(a) {
			t.Errorf("%s is loopback", a)
		}
	}
}

func TestProxiesFlagSources(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, dir, "alpha.txt", "10.0.0.1:80\n")
	b := writeFile(t, dir, "b.txt", "10.0.0.2:80\n")
	dc, err := loadArgs(t, nil, "--proxies", a, "--proxies", "beta="+b)
	if err != nil {
		t.Fatal(err)
	}
	if len(dc.engine.Sources) != 3 || dc.engine.Sources[0].Name != "alpha" || dc.engine.Sources[1].Name != "beta" || dc.engine.Sources[2].Name != "default" {
		t.Errorf("sources %+v", dc.engine.Sources)
	}
	bad := writeFile(t, dir, "bad.txt", "10.0.0.3:80\n\nuser:pw9999@10.0.0.4\n")
	_, err = loadArgs(t, nil, "--proxies", a, "--proxies", bad)
	if err == nil || !strings.HasPrefix(err.Error(), bad+":3: ") {
		t.Errorf("bad line: %v", err)
	}
	if err != nil && strings.Contains(err.Error(), "pw9999") {
		t.Errorf("credentials in %v", err)
	}
}
