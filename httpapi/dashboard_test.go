package httpapi_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
)

// dashboardScript returns the dashboard's health banner code (between
// its markers), read from the page the server serves.
func dashboardScript(t *testing.T, f *fixture) string {
	t.Helper()
	code, page := f.do("GET", "/", "")
	if code != 200 {
		t.Fatalf("GET /: %d", code)
	}
	m := regexp.MustCompile(`(?s)// -- health banner.*?// -- end health banner --`).FindString(page)
	if m == "" {
		t.Fatal("the dashboard has no health banner code between its markers")
	}
	return m
}

// TestDashboardHealthBanner runs the dashboard's banner code in Node (the
// page's own JavaScript, not a copy) on pool bodies: nothing when the
// engine is healthy, what/since when/error when the journal fails or a
// projection stops, with the error texts escaped. It skips without node,
// unless PROXYHEALTH_REQUIRE_ALL=1.
func TestDashboardHealthBanner(t *testing.T) {
	node := testutil.Program(t, "the dashboard's banner code is not run", "node")
	f, he := newHealthFixture(t, httpapi.Options{})
	script := dashboardScript(t, f)

	bodies := map[string]string{}
	for name, h := range map[string]func(){
		"healthy": func() { he.setHealth(healthyHealth()) },
		"journal": func() {
			h := failingJournal()
			h.Journal.Error = `<img src=x onerror=alert(1)> no space left on device`
			he.setHealth(h)
		},
		"stopped": func() { he.setHealth(stoppedView()) },
	} {
		h()
		_, bodies[name] = f.do("GET", "/v1/pool", "")
	}
	bodies["no health"] = `{"total":0}`
	in, _ := json.Marshal(bodies)
	js := script + `
const bodies = ` + string(in) + `;
const out = {};
for (const k of Object.keys(bodies)) out[k] = healthBannerHTML(JSON.parse(bodies[k]));
process.stdout.write(JSON.stringify(out));`
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "-e", js)
	cmd.Env = append(os.Environ(), "TZ=UTC")
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	var got map[string]string
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("node printed %q: %v", raw, err)
	}
	if got["healthy"] != "" || got["no health"] != "" {
		t.Errorf("banner for a healthy engine: %q / %q, want none", got["healthy"], got["no health"])
	}
	for name, want := range map[string][]string{
		"journal": {"journal is failing", "since", "05:00:20", "3 failed commits", "no space left on device", "&lt;img src=x"},
		"stopped": {"sqlite view", "is stopped", "05:00:30", "5 events behind", "database disk image is malformed"},
	} {
		for _, w := range want {
			if !strings.Contains(got[name], w) {
				t.Errorf("%s banner has no %q: %s", name, w, got[name])
			}
		}
	}
	if strings.Contains(got["journal"], "<img") {
		t.Errorf("the journal error is not escaped: %s", got["journal"])
	}
	if strings.Contains(got["stopped"], "journal is failing") || strings.Contains(got["stopped"], "live status") {
		t.Errorf("the stopped-view banner mentions what is fine: %s", got["stopped"])
	}
}
