package main

import (
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
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
		dc.engine.Concurrency != 1000 || dc.logFormat != "text" || dc.engine.CheckpointEvery != proxyhealth.DefaultCheckpointEvery {
		t.Errorf("top level: %+v", dc)
	}
	if len(dc.engine.Sources) != 3 {
		t.Fatalf("%d sources, want residential, datacenter and default", len(dc.engine.Sources))
	}
	res, dcs, def := dc.engine.Sources[0], dc.engine.Sources[1], dc.engine.Sources[2]
	if res.Name != "residential" || len(res.Proxies)+len(res.Entries) != 4 || res.Health.Interval != time.Minute ||
		res.Probe.TargetURL != "https://example.com/" || res.Probe.LatencyCeiling != 2*time.Second {
		t.Errorf("residential: %+v", res)
	}
	if dcs.Probe.Timeout != 3*time.Second || dcs.Health.UnhealthyThreshold != 2 || len(dcs.Probe.ExpectedStatus) != 2 || len(dcs.Entries) != 2 {
		t.Errorf("datacenter: %+v", dcs)
	}
	// The example documents the defaults: the default source equals the
	// built-in defaults.
	want := proxyhealth.DefaultHealthConfig()
	if def.Name != "default" || def.Health != want {
		t.Errorf("default source health %+v\nwant %+v", def.Health, want)
	}
	if def.Probe.TargetURL != proxyhealth.DefaultTargetURL || def.Probe.Timeout != proxyhealth.DefaultTimeout || def.Probe.Method != "HEAD" {
		t.Errorf("default source probe %+v", def.Probe)
	}
	// The serve section documents the rotation defaults.
	rc := dc.engine.Rotation
	if dc.serve != "" || dc.strategy != proxyhealth.RoundRobin || rc.IncludeDegraded || rc.DisablePanic ||
		rc.PanicThreshold != proxyhealth.DefaultPanicThreshold || rc.MaxEjectionShare != proxyhealth.DefaultMaxEjectionShare {
		t.Errorf("serve: %q %q %+v", dc.serve, dc.strategy, rc)
	}
}

func TestFlagsOverrideConfig(t *testing.T) {
	dc, err := loadArgs(t, nil, "--config", "testdata/example.yaml", "--interval", "100ms", "--timeout", "2s",
		"--check-url", "http://t.proxyhealth.test/", "--unhealthy-threshold", "7", "--healthy-threshold", "4",
		"--recovery-cooldown", "3s", "--max-recovery-attempts", "0", "--data", "/tmp/x", "--listen", "127.0.0.1:1",
		"--retention", "2d", "--concurrency", "5", "--log-format", "json", "--checkpoint-every", "0")
	if err != nil {
		t.Fatal(err)
	}
	if dc.engine.DataDir != "/tmp/x" || dc.listen != "127.0.0.1:1" || dc.engine.Retention != 48*time.Hour || dc.engine.Concurrency != 5 || dc.logFormat != "json" ||
		dc.engine.CheckpointEvery >= 0 {
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
		{"unknown.yaml", "listen: 127.0.0.1:1\nsauces: []\n", "unknown.yaml:2: unknown key \"sauces\" at the top level; did you mean sources?"},
		{"baddur.yaml", "defaults:\n  interval: soon\n", "baddur.yaml:2: \"soon\" is not a duration"},
		{"badurl.yaml", "sources:\n  - name: a\n    proxies:\n      - 10.0.0.1:80\n      - gopher://10.0.0.2:70\n", "badurl.yaml:5: "},
		{"dup.yaml", "sources:\n  - name: a\n  - name: a\n", "dup.yaml:3: source \"a\" is defined twice"},
		{"badname.yaml", "sources:\n  - name: 'a b'\n", "badname.yaml:2: sources[0].name \"a b\": use 1-64"},
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

// TestConfigUnknownKeysAtEveryLevel checks that a misspelt key is refused
// wherever it is (it was silently ignored inside a source), naming the
// file, the line, where it is and the closest known key.
func TestConfigUnknownKeysAtEveryLevel(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ name, yaml, want string }{
		{"source.yaml", "sources:\n  - name: a\n  - name: b\n    intervall: 5s\n",
			`source.yaml:4: unknown key "intervall" in sources[1]; did you mean interval?`},
		{"defaults.yaml", "defaults:\n  timout: 1s\n", `defaults.yaml:2: unknown key "timout" in defaults; did you mean timeout?`},
		{"flow.yaml", "sources: [{name: a, proxy_file: [x.txt]}]\n", `flow.yaml:1: unknown key "proxy_file" in sources[0]; did you mean proxy_files?`},
		{"case.yaml", "sources:\n  - name: a\n    Suspect-Interval: 1s\n", `case.yaml:3: unknown key "Suspect-Interval" in sources[0]; did you mean suspect_interval?`},
		{"far.yaml", "sources:\n  - name: a\n    colour: blue\n", `far.yaml:3: unknown key "colour" in sources[0]; known keys: body_pattern, ca_file,`},
		{"merge.yaml", "base: &b\n  intervall: 5s\nsources:\n  - name: a\n    <<: *b\n", `merge.yaml:1: unknown key "base" at the top level`},
		{"merge2.yaml", "defaults: &b\n  interval: 5s\n  jiter: 0.1\nsources:\n  - name: a\n    <<: *b\n", `merge2.yaml:3: unknown key "jiter" in defaults; did you mean jitter?`},
	} {
		path := writeFile(t, dir, c.name, c.yaml)
		_, err := loadArgs(t, nil, "--config", path)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v\nwant %q", c.name, err, c.want)
		}
	}
	// Known keys, anchors and merge keys still load.
	path := writeFile(t, dir, "ok.yaml", "defaults: &d\n  interval: 5s\nsources:\n  - name: a\n    <<: *d\n    headers: {X-Anything: v}\n")
	dc, err := loadArgs(t, nil, "--config", path)
	if err != nil || dc.engine.Sources[0].Health.Interval != 5*time.Second {
		t.Errorf("valid config: %v %+v", err, dc.engine.Sources)
	}
}

// TestConfigOutOfRange checks that every out-of-range value is refused,
// naming the file and line (or the flag), the field and the accepted range,
// including the zero values the engine would silently replace by a
// default.
func TestConfigOutOfRange(t *testing.T) {
	dir := t.TempDir()
	src := "sources:\n  - name: a\n  - name: b\n"
	for _, c := range []struct{ name, yaml, want string }{
		{"ret-neg.yaml", "retention: -1h\n", "ret-neg.yaml:1: retention -1h0m0s: must be at least 1h"},
		{"ret-zero.yaml", "listen: 127.0.0.1:1\nretention: 0s\n", "ret-zero.yaml:2: retention 0s: must be at least 1h"},
		{"conc-zero.yaml", "concurrency: 0\n", "conc-zero.yaml:1: concurrency 0: must be at least 1"},
		{"conc-neg.yaml", "concurrency: -3\n", "conc-neg.yaml:1: concurrency -3: must be at least 1"},
		{"conc-str.yaml", "concurrency: lots\n", "conc-str.yaml:1: concurrency: want a whole number, not a string"},
		{"conc-huge.yaml", "concurrency: 99999999999999999999\n", "conc-huge.yaml:1: concurrency: want a whole number (no fraction, not too large)"},
		{"interval.yaml", src + "    interval: 10ms\n", "interval.yaml:4: sources[1].interval 10ms: must be at least 100ms"},
		{"def-timeout.yaml", "defaults:\n  timeout: 0s\n", "def-timeout.yaml:2: defaults.timeout 0s: must be more than 0s"},
		{"timeout.yaml", src + "    timeout: -1s\n", "timeout.yaml:4: sources[1].timeout -1s: must be more than 0s"},
		{"jitter.yaml", src + "    jitter: 0.9\n", "jitter.yaml:4: sources[1].jitter 0.9: must be between 0 and 0.5"},
		{"nan.yaml", src + "    jitter: .nan\n", "nan.yaml:4: sources[1].jitter NaN: must be between 0 and 0.5"},
		{"healthy.yaml", src + "    healthy_threshold: 0\n", "healthy.yaml:4: sources[1].healthy_threshold 0: must be between 1 and 1048576"},
		{"unhealthy.yaml", src + "    unhealthy_threshold: -1\n", "unhealthy.yaml:4: sources[1].unhealthy_threshold -1: must be between 1 and 1048576"},
		{"passive.yaml", "defaults:\n  passive_failure_threshold: 0\n", "passive.yaml:2: defaults.passive_failure_threshold 0: must be between 1"},
		{"attempts.yaml", src + "    max_recovery_attempts: -2\n", "attempts.yaml:4: sources[1].max_recovery_attempts -2: must be between 0 and 1048576 (0 = never give up)"},
		{"cooldown.yaml", src + "    recovery_cooldown: 0s\n", "cooldown.yaml:4: sources[1].recovery_cooldown 0s: must be more than 0s"},
		{"cooldown-max.yaml", src + "    recovery_cooldown: 2h\n", "cooldown-max.yaml:4: sources[1].recovery_cooldown 2h0m0s: must not exceed max_recovery_cooldown (1h0m0s)"},
		{"max-cooldown.yaml", src + "    max_recovery_cooldown: 10s\n", "max-cooldown.yaml:4: sources[1].max_recovery_cooldown 10s: must be at least recovery_cooldown (1m0s)"},
		{"suspect.yaml", src + "    interval: 5s\n    suspect_interval: 10s\n", "suspect.yaml:5: sources[1].suspect_interval 10s: must not exceed interval (5s)"},
		{"ceiling.yaml", src + "    latency_ceiling: -1s\n", "ceiling.yaml:4: sources[1].latency_ceiling -1s: must be 0s (no ceiling) or more"},
		{"url-empty.yaml", src + "    check_url: ''\n", "url-empty.yaml:4: sources[1].check_url (not shown): want an absolute http or https URL"},
		{"url-creds.yaml", src + "    check_url: http://u:hunter2@example.com/\n", "url-creds.yaml:4: sources[1].check_url (not shown)"},
		{"method.yaml", src + "    method: PUT\n", `method.yaml:4: sources[1].method "PUT": want HEAD or GET`},
		{"mode.yaml", src + "    mode: ''\n", `mode.yaml:4: sources[1].mode "": want auto or tcp-connect`},
		{"status.yaml", src + "    expected_status: 200-700\n", `status.yaml:4: sources[1].expected_status "200-700": want status codes`},
		{"head-body.yaml", src + "    method: HEAD\n    body_pattern: ok\n", "head-body.yaml:3: sources[1]: probe: bad check config: BodyPattern"},
		{"header.yaml", src + "    headers: {Host: x}\n", `header.yaml:4: sources[1].headers: "Host": managed by the checker`},
		{"cafile.yaml", src + "    ca_file: missing.pem\n", "cafile.yaml:4: sources[1].ca_file: no such file"},
		{"logfmt.yaml", "log_format: xml\n", `logfmt.yaml:1: log_format "xml": want text or json`},
		{"listen.yaml", "listen: nope\n", `listen.yaml:1: listen "nope": want HOST:PORT`},
		{"data.yaml", "data: ''\n", `data.yaml:1: data "": want a directory`},
		{"notmap.yaml", "just some text with a secret\n", "notmap.yaml:1: not a YAML mapping"},
		{"shadow.yaml", "root:$y$j9T$secretsecret:19700:0:99999:7:::\n", "shadow.yaml:1: unknown key (not shown: not a setting name) at the top level; is this a proxyhealth config file?"},
	} {
		path := writeFile(t, dir, c.name, c.yaml)
		_, err := loadArgs(t, nil, "--config", path)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v\nwant %q", c.name, err, c.want)
		}
		if err != nil && (strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "lots") || strings.Contains(err.Error(), "secret")) {
			t.Errorf("%s: error %v shows the file's content", c.name, err)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--retention", "0"}, "--retention: 0s: must be at least 1h"},
		{[]string{"--checkpoint-every", "10ms"}, "--checkpoint-every: 10ms: must be at least 1s, or 0"},
		{[]string{"--concurrency", "0"}, "--concurrency: 0: must be at least 1"},
		{[]string{"--interval", "10ms"}, "--interval: 10ms: must be at least 100ms"},
		{[]string{"--timeout", "0s"}, "--timeout: 0s: must be more than 0s"},
		{[]string{"--healthy-threshold", "0"}, "--healthy-threshold: 0: must be between 1 and 1048576"},
		{[]string{"--recovery-cooldown", "2h"}, "--recovery-cooldown: 2h0m0s: must not exceed max_recovery_cooldown (1h0m0s)"},
	} {
		_, err := loadArgs(t, nil, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v\nwant %q", c.args, err, c.want)
		}
	}
	// A shorter interval set closer to the source still lowers the
	// suspect interval of the defaults (documented in example.yaml).
	path := writeFile(t, dir, "lower.yaml", "defaults:\n  suspect_interval: 1s\nsources:\n  - name: a\n    interval: 500ms\n")
	dc, err := loadArgs(t, nil, "--config", path)
	if err != nil || dc.engine.Sources[0].Health.SuspectInterval != 500*time.Millisecond {
		t.Errorf("interval below the defaults' suspect_interval: %v %+v", err, dc.engine.Sources)
	}
}

// TestProxyListContentNotEchoed points every way of naming a proxy list
// (--proxies, proxy_files:, proxies:) at content that is not a proxy list,
// or at proxy URLs with credentials, and checks that errors give the
// position and at most a short redacted excerpt.
func TestProxyListContentNotEchoed(t *testing.T) {
	dir := t.TempDir()
	shadow := writeFile(t, dir, "shadow", "root:$y$j9T$Zk3xSaltSalt$HashHashHash:19700:0:99999:7:::\ndaemon:*:19700:0:99999:7:::\n")
	creds := writeFile(t, dir, "creds.txt", "10.0.0.1:80\nsocks5://alice:S3cretPw@10.0.0.2:99999\n")
	long := writeFile(t, dir, "long.txt", "http://"+strings.Repeat("h", 200)+".example:0\n")
	secrets := []string{"root", "j9T", "Zk3xSalt", "HashHash", "19700", "alice", "S3cretPw", "hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--proxies", "s=" + shadow}, shadow + ":1: bad proxy URL (input not shown"},
		{[]string{"--config", writeFile(t, dir, "files.yaml", "sources:\n  - name: a\n    proxy_files: ["+shadow+"]\n")}, shadow + ":1: bad proxy URL (input not shown"},
		{[]string{"--config", writeFile(t, dir, "inline.yaml", "sources:\n  - name: a\n    proxies:\n      - 10.0.0.1:80\n      - 'root:$y$j9T$Zk3xSaltSalt$HashHashHash:19700:0:99999:7:::'\n")},
			"inline.yaml:5: sources[0].proxies[1]: bad proxy URL (input not shown"},
		{[]string{"--config", writeFile(t, dir, "inline2.yaml", "sources:\n  - name: a\n    proxies:\n      - root:$y$j9T$Zk3xSaltSalt$HashHashHash:19700:0:99999:7:::\n")},
			"inline2.yaml:4: want a proxy URL string"},
		{[]string{"--proxies", creds}, creds + `:2: bad proxy URL "socks5://REDACTED@10.0.0.2:99999": bad port "99999"`},
		{[]string{"--config", writeFile(t, dir, "creds.yaml", "sources:\n  - name: a\n    proxies: ['socks5://alice:S3cretPw@10.0.0.2:99999']\n")},
			`creds.yaml:3: sources[0].proxies[0]: bad proxy URL "socks5://REDACTED@10.0.0.2:99999"`},
		{[]string{"--proxies", long}, long + `:1: bad proxy URL "http://hhhh`},
	} {
		_, err := loadArgs(t, nil, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v\nwant %q", c.args, err, c.want)
			continue
		}
		for _, s := range secrets {
			if strings.Contains(err.Error(), s) {
				t.Errorf("%q: error %q shows %q", c.args, err, s)
			}
		}
	}
}

// TestConfigWebhooksAndPool: webhooks: and pool: reach the engine's
// config (the YAML refused both keys).
func TestConfigWebhooksAndPool(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "hooks.yaml", `webhooks:
  - url: https://user:hunter2@hooks.example.com/x?token=abc
    events: [proxy_down, pool_degraded, proxy_down]
    timeout: 2s
    secret: hunter2
  - url: http://127.0.0.1:9/all
    secret_env: HOOK_SECRET
pool:
  degraded_threshold: 75.5
  recovery_margin: 5
`)
	dc, err := loadArgs(t, map[string]string{"HOOK_SECRET": "from-env"}, "--config", path)
	if err != nil {
		t.Fatal(err)
	}
	w := dc.engine.Webhooks
	if len(w) != 2 || w[0].URL != "https://user:hunter2@hooks.example.com/x?token=abc" || strings.Join(w[0].Types, ",") != "proxy_down,pool_degraded" ||
		w[0].Timeout != 2*time.Second || w[0].Secret != "hunter2" ||
		w[1].URL != "http://127.0.0.1:9/all" || w[1].Types != nil || w[1].Timeout != 0 || w[1].Secret != "from-env" {
		t.Errorf("webhooks %+v", w)
	}
	if dc.engine.PoolThreshold != 75.5 || dc.engine.PoolMargin != 5 {
		t.Errorf("pool %v %v", dc.engine.PoolThreshold, dc.engine.PoolMargin)
	}
	// A margin of 0 means none (the engine's zero value means its default).
	dc, err = loadArgs(t, nil, "--config", writeFile(t, dir, "zero.yaml", "pool:\n  recovery_margin: 0\n"))
	if err != nil || dc.engine.PoolMargin >= 0 || dc.engine.PoolThreshold != 0 {
		t.Errorf("recovery_margin 0: %v %v %v", dc.engine.PoolThreshold, dc.engine.PoolMargin, err)
	}
	// The example documents the defaults.
	dc, err = loadArgs(t, nil, "--config", "testdata/example.yaml")
	if err != nil || dc.engine.PoolThreshold != proxyhealth.DefaultPoolThreshold || dc.engine.PoolMargin != proxyhealth.DefaultPoolMargin || len(dc.engine.Webhooks) != 0 {
		t.Errorf("example pool: %v %v %v", dc.engine.PoolThreshold, dc.engine.PoolMargin, err)
	}
}

// TestConfigWebhookErrors: every webhook and pool error names FILE:LINE
// and the field, and never shows a secret or more of a URL than
// scheme://host.
func TestConfigWebhookErrors(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"HOOK_SECRET": "envsecret-xyzzy"}
	for _, c := range []struct{ name, yaml, want string }{
		{"unknown.yaml", "webhooks:\n  - url: http://h.example/\n    secrte: hunter2\n", `unknown.yaml:3: unknown key "secrte" in webhooks[0]; did you mean secret?`},
		{"nourl.yaml", "webhooks:\n  - events: [proxy_down]\n", "nourl.yaml:2: webhooks[0]: url is required"},
		{"scheme.yaml", "webhooks:\n  - url: ftp://u:hunter2@files.example/x\n", "scheme.yaml:2: webhooks[0].url: (ftp://files.example) want an http:// or https:// URL"},
		{"badurl.yaml", "webhooks:\n  - url: 'http://hunter2@[::1'\n", "badurl.yaml:2: webhooks[0].url: not a URL (not shown"},
		{"event.yaml", "webhooks:\n  - url: http://h.example/\n    events:\n      - proxy_down\n      - proxy_up\n", `event.yaml:5: webhooks[0].events[1] "proxy_up": not a notification type; want proxy_down, proxy_recovered, pool_degraded, pool_recovered`},
		{"noevents.yaml", "webhooks:\n  - url: http://h.example/\n    events: []\n", "noevents.yaml:3: webhooks[0].events: an empty list sends nothing"},
		{"timeout.yaml", "webhooks:\n  - url: http://h.example/\n  - url: http://h.example/\n    timeout: 0s\n", "timeout.yaml:4: webhooks[1].timeout: 0s: must be more than 0s and at most 5m0s"},
		{"long.yaml", "webhooks:\n  - url: http://h.example/\n    timeout: 1h\n", "long.yaml:3: webhooks[0].timeout: 1h0m0s: must be more than 0s"},
		{"emptysecret.yaml", "webhooks:\n  - url: http://h.example/\n    secret: ''\n", "emptysecret.yaml:3: webhooks[0].secret: is empty"},
		{"both.yaml", "webhooks:\n  - url: http://h.example/\n    secret: hunter2\n    secret_env: HOOK_SECRET\n", "both.yaml:4: webhooks[0].secret_env: set secret or secret_env, not both"},
		{"unset.yaml", "webhooks:\n  - url: http://h.example/\n    secret_env: NOT_SET_HERE\n", "unset.yaml:3: webhooks[0].secret_env: the environment variable NOT_SET_HERE is not set or empty"},
		{"envname.yaml", "webhooks:\n  - url: http://h.example/\n    secret_env: 'a b'\n", `envname.yaml:3: webhooks[0].secret_env: "a b": want the name of an environment variable`},
		{"secrettype.yaml", "webhooks:\n  - url: http://h.example/\n    secret: [hunter2]\n", "secrettype.yaml:3: webhooks[0].secret: want a string, not a list"},
		{"notalist.yaml", "webhooks:\n  url: http://h.example/\n", "notalist.yaml:2: want a list, not a mapping"},
		{"threshold.yaml", "pool:\n  degraded_threshold: 0\n", "threshold.yaml:2: pool.degraded_threshold 0: must be more than 0 and at most 100"},
		{"high.yaml", "pool:\n  degraded_threshold: 100.5\n", "high.yaml:2: pool.degraded_threshold 100.5: must be more than 0"},
		{"nan.yaml", "pool:\n  degraded_threshold: .nan\n", "nan.yaml:2: pool.degraded_threshold NaN: must be more than 0"},
		{"margin.yaml", "pool:\n  degraded_threshold: 40\n  recovery_margin: -1\n", "margin.yaml:3: pool.recovery_margin -1: must be between 0 and 100"},
		{"poolkey.yaml", "pool:\n  threshold: 40\n", `poolkey.yaml:2: unknown key "threshold" in pool`},
	} {
		path := writeFile(t, dir, c.name, c.yaml)
		_, err := loadArgs(t, env, "--config", path)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v\nwant %q", c.name, err, c.want)
			continue
		}
		for _, secret := range []string{"hunter2", "envsecret-xyzzy", "token=abc", "/x"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: the error shows %q: %v", c.name, secret, err)
			}
		}
	}
}

// TestDefaultsAreTheEngines: the flag defaults are the engine's, not
// restated numbers.
func TestDefaultsAreTheEngines(t *testing.T) {
	dc, err := loadArgs(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if dc.engine.Retention != proxyhealth.DefaultRetention || dc.engine.Concurrency != proxyhealth.DefaultConcurrency {
		t.Errorf("retention %v, concurrency %d", dc.engine.Retention, dc.engine.Concurrency)
	}
	sc := dc.engine.Sources[0]
	if p := sc.Probe.WithDefaults(); sc.Health != proxyhealth.DefaultHealthConfig() || p.Timeout != proxyhealth.DefaultTimeout || p.TargetURL != proxyhealth.DefaultTargetURL {
		t.Errorf("default source %+v", sc)
	}
	// The source-name rule is the engine's.
	for name, ok := range map[string]bool{"a.b_c-1": true, "": false, "a b": false, strings.Repeat("x", 65): false, "ümlaut": false} {
		err := checkSourceName(name)
		engine := proxyhealth.Config{Sources: []proxyhealth.SourceConfig{{Name: name}}}.Validate()
		if (err == nil) != ok || (name != "" && (engine == nil) != ok) {
			t.Errorf("source name %q: %v (engine: %v)", name, err, engine)
		}
	}
}

// TestSourceTagsAndWeight: a source's tags and weight in the YAML reach the
// engine's config; bad ones are named with FILE:LINE.
func TestSourceTagsAndWeight(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "c.yaml", "sources:\n  - name: res\n    tags: [residential, de]\n    weight: 2.5\n    proxies: [\"10.0.0.1:3128\"]\n")
	dc, err := loadArgs(t, nil, "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	res := dc.engine.Sources[0]
	if res.Name != "res" || strings.Join(res.Tags, ",") != "residential,de" || res.Weight != 2.5 {
		t.Errorf("source %+v", res)
	}
	for body, want := range map[string]string{
		"sources:\n  - name: res\n    weight: -1\n":      "c.yaml:3: sources[0].weight -1",
		"sources:\n  - name: res\n    tags: [\"a,b\"]\n": "sources[0].tags[0]",
	} {
		cfg := writeFile(t, dir, "c.yaml", body)
		if _, err := loadArgs(t, nil, "--config", cfg); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", body, err, want)
		}
	}
}

// TestEchoURLSetting: echo_url reaches the probe config; a bad one is
// refused without showing it.
func TestEchoURLSetting(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "c.yaml", "defaults:\n  echo_url: http://echo.example/get\nsources:\n  - name: s\n    echo_url: \"\"\n")
	dc, err := loadArgs(t, nil, "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range dc.engine.Sources {
		want := "http://echo.example/get"
		if sc.Name == "s" {
			want = ""
		}
		if sc.Probe.EchoURL != want {
			t.Errorf("source %s: echo_url %q, want %q", sc.Name, sc.Probe.EchoURL, want)
		}
	}
	cfg = writeFile(t, dir, "c.yaml", "defaults:\n  echo_url: ftp://u:secretpw@echo.example/get\n")
	if _, err := loadArgs(t, nil, "--config", cfg); err == nil || !strings.Contains(err.Error(), "c.yaml:2") || strings.Contains(err.Error(), "secretpw") {
		t.Errorf("bad echo_url: %v", err)
	}
}

// TestCloseSetting: close: reaches the probe config; a bad value is named.
func TestCloseSetting(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "c.yaml", "defaults:\n  close: reset\nsources:\n  - name: s\n    close: fin\n")
	dc, err := loadArgs(t, nil, "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range dc.engine.Sources {
		want := "reset"
		if sc.Name == "s" {
			want = "fin"
		}
		if sc.Probe.Close.String() != want {
			t.Errorf("source %s: close %v, want %s", sc.Name, sc.Probe.Close, want)
		}
	}
	cfg = writeFile(t, dir, "c.yaml", "defaults:\n  close: slam\n")
	if _, err := loadArgs(t, nil, "--config", cfg); err == nil || !strings.Contains(err.Error(), "c.yaml:2") || !strings.Contains(err.Error(), "auto, fin or reset") {
		t.Errorf("bad close: %v", err)
	}
}

// TestYAMLProxiesWithTags: a YAML proxy may carry " #tags=a,b weight=N"
// like a list line; a bad attribute is named with FILE:LINE.
func TestYAMLProxiesWithTags(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "c.yaml", "sources:\n  - name: s\n    proxies:\n      - \"10.0.0.1:3128 #tags=de,res weight=2\"\n      - 10.0.0.2:3128\n")
	dc, err := loadArgs(t, nil, "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	sc := dc.engine.Sources[0]
	if len(sc.Proxies) != 1 || len(sc.Entries) != 1 || strings.Join(sc.Entries[0].Tags, ",") != "de,res" || sc.Entries[0].Weight != 2 {
		t.Errorf("source %+v", sc)
	}
	cfg = writeFile(t, dir, "c.yaml", "sources:\n  - name: s\n    proxies:\n      - \"10.0.0.1:3128 #weight=-2\"\n")
	if _, err := loadArgs(t, nil, "--config", cfg); err == nil || !strings.Contains(err.Error(), "c.yaml:4") || !strings.Contains(err.Error(), "weight") {
		t.Errorf("bad weight: %v", err)
	}
}

// TestSourceIPSetting: source_ip reaches the probe config per source, the
// flag overrides it for every source, and a bad address is named.
func TestSourceIPSetting(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "c.yaml", "defaults:\n  source_ip: 127.0.0.2\nsources:\n  - name: s\n    source_ip: 127.0.0.3\n")
	dc, err := loadArgs(t, nil, "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range dc.engine.Sources {
		want := "127.0.0.2"
		if sc.Name == "s" {
			want = "127.0.0.3"
		}
		if sc.Probe.SourceIP.String() != want {
			t.Errorf("source %s: source_ip %v, want %s", sc.Name, sc.Probe.SourceIP, want)
		}
	}
	dc, err = loadArgs(t, nil, "--config", cfg, "--check-source-ip", "127.0.0.4")
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range dc.engine.Sources {
		if sc.Probe.SourceIP.String() != "127.0.0.4" {
			t.Errorf("source %s with --check-source-ip: %v", sc.Name, sc.Probe.SourceIP)
		}
	}
	for _, bad := range []string{"0.0.0.0", "not-an-ip", "224.0.0.1"} {
		cfg = writeFile(t, dir, "c.yaml", "defaults:\n  source_ip: "+bad+"\n")
		if _, err := loadArgs(t, nil, "--config", cfg); err == nil || !strings.Contains(err.Error(), "c.yaml:2") || !strings.Contains(err.Error(), "source_ip") {
			t.Errorf("source_ip %s: %v", bad, err)
		}
	}
}

// TestClusterSettings: the cluster comes from the flags or the file's
// cluster section; incomplete settings are refused before anything starts.
func TestClusterSettings(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "c.yaml", "cluster:\n  name: pool-a\n  etcd: [127.0.0.1:2379]\n  advertise: 127.0.0.1:7070\n  lease_ttl: 3s\n")
	dc, err := loadArgs(t, nil, "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c := dc.engine.Cluster; c.Name != "pool-a" || len(c.Etcd) != 1 || c.Advertise != "127.0.0.1:7070" || c.LeaseTTL != 3*time.Second {
		t.Errorf("cluster from the file: %+v", c)
	}
	dc, err = loadArgs(t, nil, "--config", cfg, "--cluster", "pool-b", "--etcd", "10.0.0.1:2379,10.0.0.2:2379", "--advertise", "127.0.0.1:7071")
	if err != nil {
		t.Fatal(err)
	}
	if c := dc.engine.Cluster; c.Name != "pool-b" || len(c.Etcd) != 2 || c.Advertise != "127.0.0.1:7071" {
		t.Errorf("cluster from the flags: %+v", c)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--cluster", "x"}, "--etcd"},
		{[]string{"--cluster", "x", "--etcd", "127.0.0.1:2379"}, "--advertise"},
		{[]string{"--etcd", "127.0.0.1:2379"}, "without --cluster"},
		{[]string{"--cluster", "x", "--etcd", "127.0.0.1:2379", "--advertise", "nope"}, "HOST:PORT"},
		{[]string{"--cluster", "x", "--etcd", "127.0.0.1:2379", "--advertise", "127.0.0.1:1", "--lease-ttl", "100ms"}, "at least 1s"},
	} {
		if _, err := loadArgs(t, nil, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v (want %q)", tc.args, err, tc.want)
		}
	}
}
