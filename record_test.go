package proxyhealth

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/probe"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// TestRecordIsItsSpecsChecker: a proxy's record is its spec's
// CheckAsync, and a renewed record is its own (not the one it was copied
// from, whose URL and checker may be older).
func TestRecordIsItsSpecsChecker(t *testing.T) {
	src := &source{cfg: SourceConfig{Name: "s"}, settings: checkSettings(SourceConfig{Name: "s"}, 1)}
	p := newProxy(probe.MustParseProxyURL("http://user:s3cret@127.0.0.1:9"), src, pb.ProxyOrigin_PROXY_ORIGIN_API, []string{"a"}, 2)
	if p.spec.CheckAsync != p {
		t.Fatalf("the record's spec checks through %v, want the record", p.spec.CheckAsync)
	}
	if p.spec.ID != p.url.ID() || p.spec.URLRedacted != p.url.Redacted() || !p.spec.HasCredentials || p.spec.Source != "s" {
		t.Fatalf("spec %+v does not describe the record's URL %s in source s", p.spec, p.url)
	}
	np := p.renewed()
	if np.spec.CheckAsync != np || p.spec.CheckAsync != p {
		t.Fatal("a renewed record checks through the record it was copied from")
	}
	if np.spec.ID != p.spec.ID || np.spec.Origin != p.spec.Origin || !slices.Equal(np.spec.Tags, p.spec.Tags) {
		t.Fatalf("renewed spec %+v, want a copy of %+v", np.spec, p.spec)
	}
}

// TestReloadReplacesRunningRecords: a reload gives every running proxy of
// the source a new record (new settings, tags, checker) whose spec its
// actor gets, and leaves the record of a proxy still starting (no pid yet)
// as it is, since its start sets the pid on that record.
func TestReloadReplacesRunningRecords(t *testing.T) {
	e := wavesEngine(t)
	ctx := context.Background()
	ids, err := e.addProxies(ctx, "s", waveEntries(1), pb.ProxyOrigin_PROXY_ORIGIN_CONFIG)
	if err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	old := e.proxies.Get(ids[0])
	starting := newProxy(probe.MustParseProxyURL("http://127.0.0.1:9"), e.sources["s"], pb.ProxyOrigin_PROXY_ORIGIN_API, nil, 1)
	e.proxies.Put(starting)
	e.mu.Unlock()
	t.Cleanup(func() {
		e.mu.Lock()
		e.proxies.Delete(starting.spec.ID)
		e.mu.Unlock()
	})

	h := events.DefaultConfig()
	h.Interval = time.Minute
	sc := SourceConfig{Name: "s", Health: h, Probe: probe.Config{TargetURL: "http://probe.test/generate_204", Timeout: time.Second},
		Entries: []ProxyEntry{{URL: waveEntries(1)[0].URL, Tags: []string{"new"}}, {URL: "http://127.0.0.1:9"}}}
	if err := e.ReconfigureSource(ctx, sc); err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	running := e.proxies.Get(ids[0])
	if running == old || running.pid == nil || !running.pid.Equal(old.pid) {
		t.Fatalf("running proxy's record after the reload: %p (pid %v), want a new one with pid %v", running, running.pid, old.pid)
	}
	if !slices.Contains(running.spec.Tags, "new") || running.spec.Settings != e.sources["s"].settings || running.checker != e.sources["s"].checker || running.spec.CheckAsync != running {
		t.Fatalf("running proxy's new record: tags %v, settings %p, checker %p; want the reload's", running.spec.Tags, running.spec.Settings, running.checker)
	}
	if slices.Contains(old.spec.Tags, "new") {
		t.Fatal("the record handed to the actor before the reload was changed")
	}
	if got := e.proxies.Get(starting.spec.ID); got != starting {
		t.Fatalf("record of the proxy still starting: %p, want it kept (%p)", got, starting)
	}
}
