package sources

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// linesReader generates n distinct proxy lines without holding them.
type linesReader struct {
	n, i    int
	json    bool
	started bool
	buf     []byte
}

func (r *linesReader) Read(p []byte) (int, error) {
	if r.json && !r.started {
		r.buf, r.started = append(r.buf, "[\n"...), true
	}
	for len(r.buf) < len(p) && r.i <= r.n {
		switch {
		case r.i == r.n:
			if r.json {
				r.buf = append(r.buf, "]\n"...)
			}
		case r.json && r.i == r.n-1:
			r.buf = fmt.Appendf(r.buf, "%q\n", proxyLine(r.i))
		case r.json:
			r.buf = fmt.Appendf(r.buf, "%q,\n", proxyLine(r.i))
		default:
			r.buf = append(append(r.buf, proxyLine(r.i)...), '\n')
		}
		r.i++
	}
	if len(r.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.buf)
	r.buf = append(r.buf[:0], r.buf[n:]...)
	return n, nil
}

func proxyLine(i int) string {
	return fmt.Sprintf("http://10.%d.%d.%d:8080", i>>16&255, i>>8&255, i&255)
}

// repeatReader yields n bytes of c.
type repeatReader struct {
	c byte
	n int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.n)
	for i := range n {
		p[i] = r.c
	}
	r.n -= n
	return n, nil
}

// memUse runs fn and returns the bytes it allocated (TotalAlloc, a
// deterministic upper bound of its peak) and the peak of the live heap
// above the baseline, sampled every 200 µs (a lower bound of the true
// peak, for the report).
func memUse(fn func()) (allocated, peak uint64) {
	runtime.GC()
	var before, m runtime.MemStats
	runtime.ReadMemStats(&before)
	stop, done := make(chan struct{}), make(chan uint64)
	go func() {
		var top uint64
		t := time.NewTicker(200 * time.Microsecond)
		defer t.Stop()
		for {
			var s runtime.MemStats
			runtime.ReadMemStats(&s)
			top = max(top, s.HeapAlloc)
			select {
			case <-stop:
				done <- top
				return
			case <-t.C:
			}
		}
	}()
	fn()
	close(stop)
	top := <-done
	runtime.ReadMemStats(&m)
	top = max(top, m.HeapAlloc)
	if top > before.HeapAlloc {
		peak = top - before.HeapAlloc
	}
	return m.TotalAlloc - before.TotalAlloc, peak
}

const mib = 1 << 20

// TestMemoryBoundedLongLine: a 10 MB line costs the line limit, not 10
// MB, read directly or fetched.
func TestMemoryBoundedLongLine(t *testing.T) {
	var err error
	alloc, peak := memUse(func() {
		_, err = Parse("long", &repeatReader{c: 'a', n: 10 << 20}, Limits{})
	})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("error %v, want ErrTooLarge", err)
	}
	t.Logf("Parse, one 10 MB line: allocated %.2f MiB, sampled peak heap +%.2f MiB", float64(alloc)/mib, float64(peak)/mib)
	if alloc > 1*mib {
		t.Errorf("Parse allocated %d bytes for a 10 MB line, want under 1 MiB", alloc)
	}

	mux := http.NewServeMux()
	chunk := []byte(strings.Repeat("a", 32<<10))
	mux.HandleFunc("/long", func(w http.ResponseWriter, r *http.Request) { writeRepeated(w, chunk, 10<<20) })
	p := newProvider(t, false, mux)
	alloc, peak = memUse(func() {
		_, err = (&Fetcher{}).Fetch(context.Background(), Request{URL: p.srv.URL + "/long"})
	})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("error %v, want ErrTooLarge", err)
	}
	t.Logf("Fetch (client and fake server), one 10 MB line: allocated %.2f MiB, sampled peak heap +%.2f MiB", float64(alloc)/mib, float64(peak)/mib)
	if alloc > 4*mib {
		t.Errorf("Fetch allocated %d bytes for a 10 MB line, want under 4 MiB", alloc)
	}
}

// TestMemoryBoundedManyLines: a list of 1,000,000 lines is refused at the
// proxy limit, and costs what the limit allows, not what the input holds:
// 3,000,000 lines cost the same.
func TestMemoryBoundedManyLines(t *testing.T) {
	var allocs [2]uint64
	for i, n := range []int{1_000_000, 3_000_000} {
		var err error
		alloc, peak := memUse(func() {
			_, err = Parse("many", &linesReader{n: n}, Limits{})
		})
		var pe *ParseError
		if !errors.As(err, &pe) || !errors.Is(err, ErrTooLarge) || pe.Line != DefaultMaxEntries+1 {
			t.Fatalf("%d lines: error %v, want ErrTooLarge at line %d", n, err, DefaultMaxEntries+1)
		}
		allocs[i] = alloc
		t.Logf("Parse, %d lines (default limits): allocated %.1f MiB, sampled peak heap +%.1f MiB", n, float64(alloc)/mib, float64(peak)/mib)
	}
	if allocs[1] > allocs[0]+allocs[0]/10 {
		t.Errorf("3,000,000 lines allocated %d bytes, 1,000,000 lines %d: want the same within 10%%", allocs[1], allocs[0])
	}
}

// BenchmarkParseMillionAccepted measures a 1,000,000-proxy list accepted
// with raised limits (what a list that large costs): a measurement, so a
// benchmark (make bench), not a test; under the race detector it took 55 s
// and its allocation figures were 13 times the real ones.
func BenchmarkParseMillionAccepted(b *testing.B) {
	for _, json := range []bool{false, true} {
		name := "plain"
		if json {
			name = "json"
		}
		b.Run(name, func(b *testing.B) {
			for range b.N {
				var l List
				var err error
				alloc, peak := memUse(func() {
					l, err = Parse("million", &linesReader{n: 1_000_000, json: json}, Limits{MaxEntries: 1_000_000, MaxLines: 1_000_002})
				})
				if err != nil || len(l.Entries) != 1_000_000 {
					b.Fatalf("json=%v: %d entries, %v", json, len(l.Entries), err)
				}
				if e := l.Entries[999_999]; e.URL != proxyLine(999_999) || e.Line != 1_000_000+btoi(json) {
					b.Fatalf("json=%v: last entry %v at line %d", json, e, e.Line)
				}
				b.ReportMetric(float64(alloc)/mib, "MiB-allocated")
				b.ReportMetric(float64(peak)/mib, "MiB-peak-heap")
				runtime.KeepAlive(l)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// BenchmarkParse100k parses a 100,000-line list; reports lines/s.
func BenchmarkParse100k(b *testing.B) {
	for _, json := range []bool{false, true} {
		name := "plain"
		if json {
			name = "json"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse("bench", &linesReader{n: 100_000, json: json}, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(100_000*b.N)/b.Elapsed().Seconds(), "lines/s")
		})
	}
}
