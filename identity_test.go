package proxyhealth_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/internal/fakeproxy"
	"github.com/proxyhealth/proxyhealth/journal"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// oldID is a proxy's ID before the user name was part of its identity:
// the SHA-256 of scheme://host:port.
func oldID(schemeHostPort string) string {
	sum := sha256.Sum256([]byte(schemeHostPort))
	return hex.EncodeToString(sum[:8])
}

// TestJournalsFromBeforeUserNamesWereIdentityMigrate: a journal written
// when proxies with credentials were identified by scheme, host and port
// only. At start-up the configured proxy goes on under its new ID, the
// run-time one too (its credentials move with it), and each old stream
// ends with a removal saying why; a proxy without credentials keeps its ID
// and its state.
func TestJournalsFromBeforeUserNamesWereIdentityMigrate(t *testing.T) {
	farm := startFarm(t, 3)
	dir := t.TempDir()
	cfgURL := strings.Replace(farm.URL(0), "http://", "http://alice:pw@", 1)
	apiURL := strings.Replace(farm.URL(1), "http://", "http://bob:pw@", 1)
	plain := farm.URL(2)
	oldCfg, oldAPI := oldID(farm.URL(0)), oldID(farm.URL(1))
	plainID, _ := proxyhealth.ResolveProxyID(plain)
	if plainID != oldID(plain) {
		t.Fatalf("a proxy without credentials changed its ID: %s, was %s", plainID, oldID(plain))
	}

	// The old journal: three proxies added and checked.
	j, err := journal.OpenBolt(filepath.Join(dir, proxyhealth.JournalFile))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-time.Hour).UnixNano()
	var envs []*pb.Envelope
	for _, p := range []struct {
		id, url, source string
		creds           bool
		origin          pb.ProxyOrigin
	}{
		{oldCfg, farm.URL(0), "pool", true, pb.ProxyOrigin_PROXY_ORIGIN_CONFIG},
		{oldAPI, farm.URL(1), "pool", true, pb.ProxyOrigin_PROXY_ORIGIN_API},
		{plainID, plain, "pool", false, pb.ProxyOrigin_PROXY_ORIGIN_CONFIG},
	} {
		envs = append(envs,
			&pb.Envelope{ProxyId: p.id, Source: p.source, StreamSeq: 1, AtUnixNano: at, Event: &pb.Envelope_ProxyAdded{ProxyAdded: &pb.ProxyAdded{
				UrlRedacted: p.url, Source: p.source, HasCredentials: p.creds, Origin: p.origin}}},
			&pb.Envelope{ProxyId: p.id, Source: p.source, StreamSeq: 2, AtUnixNano: at + 1, Event: &pb.Envelope_CheckSucceeded{CheckSucceeded: &pb.CheckSucceeded{
				StatusCode: 204, Latency: &pb.Latency{TotalNs: int64(time.Millisecond)}}}},
			&pb.Envelope{ProxyId: p.id, Source: p.source, StreamSeq: 3, AtUnixNano: at + 2, Event: &pb.Envelope_StateChanged{StateChanged: &pb.StateChanged{
				From: pb.HealthState_HEALTH_STATE_UNKNOWN, To: pb.HealthState_HEALTH_STATE_HEALTHY, Reason: "first success"}}})
	}
	if _, err := j.Append(context.Background(), envs); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	// The run-time proxy's credentials, kept under its old ID.
	doc, _ := json.Marshal(map[string]any{"version": 1, "proxies": map[string]string{oldAPI: apiURL}})
	if err := os.WriteFile(filepath.Join(dir, proxyhealth.CredentialsFile), doc, 0o600); err != nil {
		t.Fatal(err)
	}

	e := open(t, proxyhealth.Config{DataDir: dir, ResumeAddedProxies: true,
		Sources: []proxyhealth.SourceConfig{{Name: "pool", Health: fastHealth(), Probe: farmProbe(), Proxies: []string{cfgURL, plain}}}})
	newCfg, _ := proxyhealth.ResolveProxyID(cfgURL)
	newAPI, _ := proxyhealth.ResolveProxyID(apiURL)
	running := map[string]bool{}
	for _, id := range e.ProxyIDs() {
		running[id] = true
	}
	if len(running) != 3 || !running[newCfg] || !running[newAPI] || !running[plainID] {
		t.Fatalf("running %v, want the new IDs %s, %s and the unchanged %s", running, newCfg, newAPI, plainID)
	}
	reasons := removalReasons(t, e)
	for _, old := range []string{oldCfg, oldAPI} {
		if !strings.Contains(reasons[old], "identity now includes the user name") {
			t.Errorf("old stream %s: removal reason %q", old, reasons[old])
		}
		if _, ok := e.Status().Proxy(old); ok {
			t.Errorf("the old stream %s is still in the status", old)
		}
	}
	if _, removed := reasons[plainID]; removed {
		t.Errorf("the proxy without credentials was removed: %q", reasons[plainID])
	}
	if v, _ := e.Status().Proxy(plainID); v.State != "healthy" || v.TotalChecks == 0 {
		t.Errorf("the proxy without credentials lost its state: %+v", v)
	}
	closeEngine(t, e)
	b, err := os.ReadFile(filepath.Join(dir, proxyhealth.CredentialsFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), oldAPI) || !strings.Contains(string(b), newAPI) {
		t.Errorf("the credentials file still keys the run-time proxy by its old ID: %s", b)
	}
}

// TestANewPasswordIsTheSameProxy: a reload that gives a proxy a new
// password keeps its ID, state and stream, and its checks and picks use the
// new credentials.
func TestANewPasswordIsTheSameProxy(t *testing.T) {
	farm := startFarm(t, 1)
	if err := farm.SetCredentials(0, "alice", "pw1"); err != nil {
		t.Fatal(err)
	}
	if err := farm.Set(0, fakeproxy.AuthRequired()); err != nil {
		t.Fatal(err)
	}
	with := func(pw string) string { return strings.Replace(farm.URL(0), "http://", "http://alice:"+pw+"@", 1) }
	sc := proxyhealth.SourceConfig{Name: "s", Health: fastHealth(), Probe: farmProbe(), Proxies: []string{with("pw1")}}
	e := open(t, proxyhealth.Config{Sources: []proxyhealth.SourceConfig{sc}})
	id, _ := proxyhealth.ResolveProxyID(with("pw1"))
	waitState(t, e, id, pb.HealthState_HEALTH_STATE_HEALTHY)
	// The provider rotates the password: checks fail until the
	// configuration follows.
	if err := farm.SetCredentials(0, "alice", "pw2"); err != nil {
		t.Fatal(err)
	}
	waitState(t, e, id, pb.HealthState_HEALTH_STATE_UNHEALTHY)
	sc.Proxies = []string{with("pw2")}
	diff, err := e.Reconcile(context.Background(), []proxyhealth.SourceConfig{sc})
	if err != nil || len(diff.Added)+len(diff.Removed) != 0 {
		t.Fatalf("Reconcile with a new password: %+v, %v; want the same proxy", diff, err)
	}
	waitState(t, e, id, pb.HealthState_HEALTH_STATE_HEALTHY)
	if ids := e.ProxyIDs(); len(ids) != 1 || ids[0] != id {
		t.Fatalf("proxies %v, want only %s", ids, id)
	}
	poll(t, "a pick with the new password", func() bool {
		p, err := e.Pick(proxyhealth.PickRequest{})
		if err != nil {
			return false
		}
		pw, _ := p.URL.User.Password()
		return pw == "pw2"
	})
}
