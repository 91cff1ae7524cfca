package sqlview_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/projections/sqlview"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// TestTheViewHasMetadataExitAndSourceRefreshes: tags, weight, exit IP,
// anonymity and the ejection's end are proxies columns; a source's refresh
// events fill source_refreshes, incrementally as in a rebuild.
func TestTheViewHasMetadataExitAndSourceRefreshes(t *testing.T) {
	j := journal.NewMem()
	defer j.Close()
	ctx := context.Background()
	at := int64(1_700_000_000_000_000_000)
	envs := []*pb.Envelope{
		{ProxyId: "p1", Source: "gw", StreamSeq: 1, AtUnixNano: at, Event: &pb.Envelope_ProxyAdded{ProxyAdded: &pb.ProxyAdded{UrlRedacted: "http://~1a2b3c4d@gw:7777", Source: "gw", Tags: []string{"de", "res"}, Weight: 2}}},
		{ProxyId: "p1", Source: "gw", StreamSeq: 2, AtUnixNano: at + 1, Event: &pb.Envelope_CheckSucceeded{CheckSucceeded: &pb.CheckSucceeded{StatusCode: 200, Latency: &pb.Latency{TotalNs: 1e6}}}},
		{ProxyId: "p1", Source: "gw", StreamSeq: 3, AtUnixNano: at + 2, Event: &pb.Envelope_ExitObserved{ExitObserved: &pb.ExitObserved{ExitIp: "203.0.113.7", Anonymity: pb.Anonymity_ANONYMITY_ELITE}}},
		{Source: "gw", AtUnixNano: at + 3, Event: &pb.Envelope_SourceRefreshed{SourceRefreshed: &pb.SourceRefreshed{Added: 1, Total: 1}}},
		{Source: "gw", AtUnixNano: at + 4, Event: &pb.Envelope_SourceRefreshFailed{SourceRefreshFailed: &pb.SourceRefreshFailed{Error: "503 from the provider", Kept: 1}}},
	}
	// The view is opened on the first event and catches up with the rest
	// incrementally.
	if _, err := j.Append(ctx, envs[:1]); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "view.db")
	v, err := sqlview.OpenView(ctx, path, j, sqlview.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append(ctx, envs[1:]); err != nil {
		t.Fatal(err)
	}
	if err := v.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var tags, exit, anon string
	var weight float64
	if err := db.QueryRow("SELECT tags, weight, exit_ip, anonymity FROM proxies WHERE id = 'p1'").Scan(&tags, &weight, &exit, &anon); err != nil {
		t.Fatal(err)
	}
	if tags != "de,res" || weight != 2 || exit != "203.0.113.7" || anon != "elite" {
		t.Errorf("proxies row: %q %v %q %q", tags, weight, exit, anon)
	}
	var lastRefresh sql.NullString
	var lastErr string
	if err := db.QueryRow("SELECT last_refresh, last_error FROM source_refreshes WHERE source = 'gw'").Scan(&lastRefresh, &lastErr); err != nil {
		t.Fatal(err)
	}
	if !lastRefresh.Valid || lastErr != "503 from the provider" {
		t.Errorf("source_refreshes: %v %q", lastRefresh, lastErr)
	}
	// A rebuild gives the same rows.
	if err := sameViews(t, path, rebuilt(t, j, t.TempDir())); err != nil {
		t.Fatal(err)
	}
}
