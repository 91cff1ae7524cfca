package fakeproxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ErrBadReport is returned by ParseReport for a line that is not a farm's
// report.
var ErrBadReport = errors.New("fakeproxy: not a farm report")

// Report is everything a farm counted, in a form that crosses a process
// boundary: a farm in a child process (WithHost, one 127.0.0.x per child)
// writes it with WriteReport or ServeControl's "report" command, the
// parent reads it with ParseReport.
type Report struct {
	// TotalChecks is Farm.TotalChecks.
	TotalChecks uint64
	// Addrs are the proxies' "host:port", by index.
	Addrs []string
	// Proxies are Farm.Stats(i) for every proxy, by index.
	Proxies []Stats
}

// Report returns the farm's statistics. It locks each proxy in turn, so
// the figures of different proxies may be a few checks apart.
func (f *Farm) Report() Report {
	r := Report{TotalChecks: f.TotalChecks(), Addrs: make([]string, len(f.proxies)), Proxies: make([]Stats, len(f.proxies))}
	for i, p := range f.proxies {
		r.Addrs[i] = p.addr
		r.Proxies[i] = f.Stats(i)
	}
	return r
}

// WriteReport writes Report() to w as one line of JSON (about 250 bytes
// per proxy and source).
func (f *Farm) WriteReport(w io.Writer) error {
	b, err := json.Marshal(f.Report())
	if err != nil {
		return fmt.Errorf("fakeproxy: encode the report: %w", err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("fakeproxy: write the report: %w", err)
	}
	return nil
}

// ParseReport decodes a line written by WriteReport (the trailing newline
// is optional). Errors wrap ErrBadReport.
func ParseReport(line []byte) (Report, error) {
	var r Report
	if err := json.Unmarshal(line, &r); err != nil {
		return Report{}, fmt.Errorf("%w: %v (want the line WriteReport writes; a bufio.Scanner needs a buffer as large as the line, Scanner.Buffer)", ErrBadReport, err)
	}
	if len(r.Addrs) != len(r.Proxies) {
		return Report{}, fmt.Errorf("%w: %d addresses for %d proxies", ErrBadReport, len(r.Addrs), len(r.Proxies))
	}
	return r, nil
}

// Sources returns the checks of all the report's proxies per source
// address, as Farm.Sources does.
func (r Report) Sources() []SourceStats {
	var out []SourceStats
	for _, st := range r.Proxies {
		out = mergeSources(out, st.Sources)
	}
	sortSources(out)
	return out
}

// ServeControl answers commands read from r, one a line, on w, until r
// ends (nil), ctx is done (ctx.Err(); r is closed then if it is an
// io.Closer, such as os.Stdin or a pipe, so that a blocked read ends) or
// a write fails. It lets a parent process drive a farm in a child over
// its stdin and stdout:
//
//	count   one line: TotalChecks
//	report  one line: WriteReport's JSON (read it with ParseReport)
//	reset   ResetStats, then one line: ok
//
// Anything else is answered with one line starting with "ERR".
func (f *Farm) ServeControl(ctx context.Context, r io.Reader, w io.Writer) error {
	if c, ok := r.(io.Closer); ok {
		stop := context.AfterFunc(ctx, func() { _ = c.Close() })
		defer stop()
	}
	in := bufio.NewScanner(r)
	out := bufio.NewWriter(w)
	for in.Scan() {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		switch cmd := strings.TrimSpace(in.Text()); cmd {
		case "count":
			_, err = out.WriteString(strconv.FormatUint(f.TotalChecks(), 10) + "\n")
		case "report":
			err = f.WriteReport(out)
		case "reset":
			f.ResetStats()
			_, err = out.WriteString("ok\n")
		default:
			_, err = fmt.Fprintf(out, "ERR unknown command %q: want count, report or reset\n", cmd)
		}
		if err == nil {
			err = out.Flush()
		}
		if err != nil {
			return fmt.Errorf("fakeproxy: ServeControl: answer: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := in.Err(); err != nil {
		return fmt.Errorf("fakeproxy: ServeControl: read a command: %w", err)
	}
	return nil
}
