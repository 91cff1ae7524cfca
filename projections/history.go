package projections

import (
	"context"
	"fmt"
	"time"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/journal"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// Defaults of HistoryOptions.
const (
	// DefaultHistoryWindow is how far back History reaches.
	DefaultHistoryWindow = 24 * time.Hour
	// DefaultHistoryCap is how many check results History returns at most.
	DefaultHistoryCap = 64
)

// HistoryOptions configures NewHistory. The zero value gives the defaults.
type HistoryOptions struct {
	// Window bounds how far back Checks reaches (default 24 h before now).
	Window time.Duration
	// Cap bounds how many check results Checks returns (default 64).
	Cap int
	// Clock returns "now" for the window (default time.Now).
	Clock func() time.Time
}

// History reads a proxy's recent check results from the journal, where
// they already are: keeping the last 64 results of every proxy in memory
// as well cost 10 MB at 10,000 proxies. Reading them costs one walk of the
// tail of the proxy's stream (about 110 µs for a full history in a bbolt
// journal, BenchmarkHistoryChecks). It is safe for concurrent use.
type History struct {
	j    journal.Journal
	opts HistoryOptions
}

// NewHistory returns a reader of the check history journaled in j.
func NewHistory(j journal.Journal, opts HistoryOptions) *History {
	if opts.Window <= 0 {
		opts.Window = DefaultHistoryWindow
	}
	if opts.Cap <= 0 {
		opts.Cap = DefaultHistoryCap
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	return &History{j: j, opts: opts}
}

// historyFirstRead is how many of a stream's newest events the first read
// of Checks takes; each further read, if needed, takes twice as many.
const historyFirstRead = 128

// Checks returns a proxy's check results since the given time (zero: the
// whole window), newest first: at most HistoryOptions.Cap of them, never
// older than HistoryOptions.Window before now, and none from before the
// proxy was last added. An unknown proxy has none. Errors are the
// journal's (ctx's, or ErrClosed).
func (h *History) Checks(ctx context.Context, id string, since time.Time) ([]CheckRecord, error) {
	from := h.opts.Clock().Add(-h.opts.Window).UnixNano()
	if !since.IsZero() {
		from = max(from, since.UnixNano())
	}
	var out []CheckRecord
	var buf []*pb.Envelope
	end := h.j.StreamHead(id) + 1 // read stream seqs [lo, end)
	for n := uint64(historyFirstRead); end > 1; n *= 2 {
		lo := max(end-min(n, end-1), 1)
		buf = buf[:0]
		for env, err := range h.j.ReadStream(ctx, id, lo) {
			if err != nil {
				return nil, fmt.Errorf("projections: history of proxy %s: %w", id, err)
			}
			if env.GetStreamSeq() >= end {
				break
			}
			buf = append(buf, env)
		}
		// Newest first; stop at the proxy's last ProxyAdded (an earlier
		// life), at the window or at the cap.
		for i := len(buf) - 1; i >= 0; i-- {
			env := buf[i]
			if env.GetAtUnixNano() < from {
				return out, nil
			}
			switch ev := env.GetEvent().(type) {
			case *pb.Envelope_ProxyAdded:
				return out, nil
			case *pb.Envelope_CheckSucceeded:
				c := ev.CheckSucceeded
				out = append(out, checkRecordOf(env, true, 0, c.GetStatusCode(), c.GetLatency()))
			case *pb.Envelope_CheckFailed:
				c := ev.CheckFailed
				out = append(out, checkRecordOf(env, false, c.GetClass(), c.GetStatusCode(), c.GetLatency()))
			}
			if len(out) == h.opts.Cap {
				return out, nil
			}
		}
		if len(buf) == 0 || buf[0].GetStreamSeq() > lo {
			return out, nil // retention deleted the rest
		}
		end = lo
	}
	return out, nil
}

// CheckRecord is one check result in a proxy's history.
type CheckRecord struct {
	At time.Time `json:"at"`
	OK bool      `json:"ok"`
	// Class is the failure class ("" when OK).
	Class      string `json:"class,omitempty"`
	StatusCode uint32 `json:"status_code,omitempty"`
	// Latency is the total latency.
	Latency time.Duration `json:"latency_ns"`
}

func checkRecordOf(env *pb.Envelope, ok bool, class pb.FailureClass, status uint32, lat *pb.Latency) CheckRecord {
	r := CheckRecord{
		At: time.Unix(0, env.GetAtUnixNano()).UTC(), OK: ok, StatusCode: status,
		Latency: time.Duration(lat.GetTotalNs()),
	}
	if !ok {
		r.Class = events.ClassName(class)
	}
	return r
}
