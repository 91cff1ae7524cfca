package sqlview

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/proxyhealth/proxyhealth/projections"
)

// Snapshot is what a view file says of the pool: read without the journal,
// so it works while an engine holds the journal, and without folding it. It
// is as recent as the view (Summary.Seq).
type Snapshot struct {
	// Summary has the counts per state and per source, the journal seq the
	// view applied (Seq) and the time of that event (UpdatedAt). Checking
	// is always 0 (a view does not know).
	Summary projections.Summary
	// Paused lists paused proxies, sorted by ID, at most the limit asked.
	Paused []projections.ProxyView
}

// ReadSnapshot reads the view file at path read-only (the file is never
// changed): the pool summary and up to pausedLimit paused proxies. It
// works beside a running engine, and costs the same on any journal length.
// A missing view wraps os.ErrNotExist; one that is not a proxyhealth view
// wraps ErrViewCorrupt or ErrViewVersion and says how to rebuild it.
func ReadSnapshot(ctx context.Context, path string, pausedLimit int) (Snapshot, error) {
	if _, exists, err := PeekOffset(ctx, path); err != nil || !exists {
		if err == nil {
			err = fmt.Errorf("sqlview: no view at %s: %w", path, os.ErrNotExist)
		}
		return Snapshot{}, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return Snapshot{}, err
	}
	db, err := openDB("", abs, "mode=ro", "PRAGMA busy_timeout = 5000")
	if err != nil {
		return Snapshot{}, fmt.Errorf("sqlview: open %s: %w", path, err)
	}
	defer db.Close()
	bad := func(err error) error {
		return fmt.Errorf("%w: %s is not a readable proxyhealth view (%v); rebuild it with 'proxyhealth rebuild'", ErrViewCorrupt, path, err)
	}
	var s Snapshot
	var seq, newest int64
	err = db.QueryRowContext(ctx, "SELECT seq, newest_at_unix_nano FROM projection_offsets WHERE name = ?", OffsetName).Scan(&seq, &newest)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return Snapshot{}, bad(err)
	}
	s.Summary.Seq = uint64(seq)
	if newest > 0 {
		s.Summary.UpdatedAt = time.Unix(0, newest).UTC()
	}
	rows, err := db.QueryContext(ctx, `SELECT source, total, unknown, healthy, degraded, unhealthy, recovering, failed, paused,
		health_percentage, avg_latency_ms FROM sources ORDER BY source`)
	if err != nil {
		return Snapshot{}, bad(err)
	}
	var latSum time.Duration
	var latN int
	for rows.Next() {
		var src projections.SourceSummary
		var pct, lat sql.NullFloat64
		c := &src.Counts
		if err := rows.Scan(&src.Name, &c.Total, &c.Unknown, &c.Healthy, &c.Degraded, &c.Unhealthy, &c.Recovering, &c.Failed, &c.Paused, &pct, &lat); err != nil {
			rows.Close()
			return Snapshot{}, bad(err)
		}
		c.HealthPercentage = pct.Float64
		if lat.Valid {
			src.AvgLatency = time.Duration(lat.Float64 * float64(time.Millisecond))
			latSum += src.AvgLatency
			latN++
		}
		s.Summary.Sources = append(s.Summary.Sources, src)
		s.Summary.Counts.Add(*c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Snapshot{}, bad(err)
	}
	if t := &s.Summary.Counts; t.Total > 0 {
		t.HealthPercentage = math.Round(float64(t.Healthy)*10000/float64(t.Total)) / 100
	}
	if latN > 0 {
		s.Summary.AvgLatency = latSum / time.Duration(latN)
	}
	if pausedLimit > 0 {
		rows, err := db.QueryContext(ctx, "SELECT id, url_redacted, source, state FROM proxies WHERE paused ORDER BY id LIMIT ?", pausedLimit)
		if err != nil {
			return Snapshot{}, bad(err)
		}
		defer rows.Close()
		for rows.Next() {
			v := projections.ProxyView{Paused: true}
			if err := rows.Scan(&v.ID, &v.URLRedacted, &v.Source, &v.State); err != nil {
				return Snapshot{}, bad(err)
			}
			s.Paused = append(s.Paused, v)
		}
		if err := rows.Err(); err != nil {
			return Snapshot{}, bad(err)
		}
	}
	return s, nil
}
