package sqlview_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/projections/sqlview"
)

// TestCheckHistoryRowsAreTheEvents: every check_history row says what its
// check event says, successes (written by a statement of their own, with
// ok, class and message as constants) and failures alike.
func TestCheckHistoryRowsAreTheEvents(t *testing.T) {
	j := filled(t, 11, 3000)
	path := filepath.Join(t.TempDir(), "view.db")
	// Kept for good: the simulation's clock jumps hours ahead.
	v := openView(t, path, j, sqlview.Options{BatchSize: 100, HistoryRetention: 100 * 365 * 24 * time.Hour})
	if err := v.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	db := v.DB()
	var successes, failures int
	for e, err := range j.Read(context.Background(), 1) {
		if err != nil {
			t.Fatal(err)
		}
		type row struct {
			proxyID, at, class, message string
			ok, status                  int64
			connect, firstByte, total   float64
		}
		var want row
		switch {
		case e.GetCheckSucceeded() != nil:
			c := e.GetCheckSucceeded()
			l := c.GetLatency()
			want = row{e.GetProxyId(), sqlview.FormatTime(e.GetAtUnixNano()), "", "", 1, int64(c.GetStatusCode()),
				float64(l.GetConnectNs()) / 1e6, float64(l.GetFirstByteNs()) / 1e6, float64(l.GetTotalNs()) / 1e6}
			successes++
		case e.GetCheckFailed() != nil:
			c := e.GetCheckFailed()
			l := c.GetLatency()
			want = row{e.GetProxyId(), sqlview.FormatTime(e.GetAtUnixNano()), events.ClassName(c.GetClass()), c.GetMessage(), 0, int64(c.GetStatusCode()),
				float64(l.GetConnectNs()) / 1e6, float64(l.GetFirstByteNs()) / 1e6, float64(l.GetTotalNs()) / 1e6}
			failures++
		default:
			continue
		}
		var got row
		err := db.QueryRow(`SELECT proxy_id, at, class, message, ok, status_code, connect_ms, first_byte_ms, total_ms FROM check_history WHERE seq = ?`, e.GetSeq()).
			Scan(&got.proxyID, &got.at, &got.class, &got.message, &got.ok, &got.status, &got.connect, &got.firstByte, &got.total)
		if err == sql.ErrNoRows {
			t.Fatalf("seq %d: no check_history row", e.GetSeq())
		}
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("seq %d: row %+v, want %+v", e.GetSeq(), got, want)
		}
	}
	if successes == 0 || failures == 0 {
		t.Fatalf("%d successes and %d failures: the journal does not exercise both", successes, failures)
	}
}
