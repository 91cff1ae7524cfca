package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/httpapi"
)

// journalPageSize is the limit= of each GET /v1/journal request: the
// largest page the API serves. A full page means there may be more.
// Tests lower it to exercise the paging.
var journalPageSize = httpapi.MaxJournalLimit

// journalPageTimeout bounds one page's request and answer.
const journalPageTimeout = 2 * time.Minute

// maxJournalLine bounds one JSON line of GET /v1/journal.
const maxJournalLine = 1 << 20

// serverJournal yields the records that f selects from the daemon at base,
// reading GET /v1/journal one page at a time: memory holds one line, not a
// page. Times are sent as absolute RFC 3339 times, computed once, so every
// page selects the same window.
//
// With resume, a page whose answer breaks off after at least one event is
// asked for again from the last event read (after=), as often as each
// attempt brings new events: in a merge an answer waits while the other
// members are read, and the daemon ends a response its client does not
// read for 30 s. An answer that breaks off before any new event is an
// error, as without resume.
func serverJournal(ctx context.Context, base *url.URL, token string, f proxyhealth.JournalFilter, resume bool) iter.Seq2[proxyhealth.Record, error] {
	return func(yield func(proxyhealth.Record, error) bool) {
		client := &http.Client{Timeout: journalPageTimeout}
		q := url.Values{}
		if f.Proxy != "" {
			q.Set("proxy", f.Proxy)
		}
		if len(f.Types) > 0 {
			q.Set("type", strings.Join(f.Types, ","))
		}
		if f.Source != "" {
			q.Set("source", f.Source)
		}
		if !f.Since.IsZero() {
			q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
		}
		if !f.Until.IsZero() {
			q.Set("until", f.Until.UTC().Format(time.RFC3339Nano))
		}
		q.Set("limit", strconv.Itoa(journalPageSize))
		after := f.After
		for {
			q.Set("after", strconv.FormatUint(after, 10))
			n, last, stop, err := journalPage(ctx, client, base, token, q, after, yield)
			if errors.Is(err, errBrokeOff) && resume && n > 0 && ctx.Err() == nil {
				after = last
				continue
			}
			if err != nil {
				yield(proxyhealth.Record{}, err)
				return
			}
			if stop || n < journalPageSize {
				return
			}
			after = last
		}
	}
}

// errBrokeOff marks an answer of GET /v1/journal that ended before its
// end (the connection broke, the daemon cut it off, the page timed out).
var errBrokeOff = errors.New("proxyhealth: the journal's answer broke off")

// brokeOff is the cause of a broken answer, marked as errBrokeOff; its
// text is the cause's.
type brokeOff struct{ err error }

func (b brokeOff) Error() string        { return b.err.Error() }
func (b brokeOff) Unwrap() error        { return b.err }
func (b brokeOff) Is(target error) bool { return target == errBrokeOff }

// journalPage reads one page and yields its records. It returns how many
// there were, the last seq, and stop when yield asked to stop.
func journalPage(ctx context.Context, client *http.Client, base *url.URL, token string, q url.Values, after uint64,
	yield func(proxyhealth.Record, error) bool) (n int, last uint64, stop bool, err error) {
	u := base.JoinPath("/v1/journal")
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, 0, false, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, 0, false, ctx.Err()
		}
		return 0, 0, false, fmt.Errorf("no daemon answers at %s (%v); start one with 'proxyhealth run', or read a data directory with --data", base, unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e httpapi.ErrorBody
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return 0, 0, false, fmt.Errorf("%s: %s: %s", u.Redacted(), resp.Status, e.Error)
		}
		if resp.StatusCode == http.StatusNotFound {
			return 0, 0, false, fmt.Errorf("%s: %s: the daemon has no journal endpoint (an older proxyhealth?); stop it and read the data directory with --data", u.Redacted(), resp.Status)
		}
		return 0, 0, false, fmt.Errorf("%s: %s", u.Redacted(), resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxJournalLine)
	last = after
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		var r proxyhealth.Record
		if err := json.Unmarshal(line, &r); err != nil {
			return n, last, false, fmt.Errorf("%s: line %d is not a journal event (is it a proxyhealth?): %w", u.Redacted(), n+1, err)
		}
		if r.Seq <= last {
			return n, last, false, fmt.Errorf("%s: event seq %d after seq %d: the daemon's answer is out of order", u.Redacted(), r.Seq, last)
		}
		n++
		last = r.Seq
		if !yield(r, nil) {
			return n, last, true, nil
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return n, last, false, fmt.Errorf("%s: a line longer than %d bytes", u.Redacted(), maxJournalLine)
		}
		// A page cut off (the daemon failed to read its journal, or the
		// connection broke) must not pass for the end of the journal.
		return n, last, false, fmt.Errorf("%s: the answer broke off after %d events (seq %d): %w", u.Redacted(), n, last, brokeOff{err})
	}
	return n, last, false, nil
}
