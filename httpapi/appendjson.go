package httpapi

import (
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// The bodies of GET /v1/proxies and GET /v1/pool are written by
// appendJSON below instead of encoding/json: the same bytes
// (TestAppendJSONIsEncodingJSON, TestPoolAppendJSONIsEncodingJSON and
// FuzzAppendJSON compare them), without reflection and without an
// allocation per time (which time.Time.MarshalJSON makes, four a proxy).
// Under BenchmarkDaemon's API load a page of 100 proxies took about 340
// µs of CPU to encode, most of the daemon's CPU for its API, and the
// API's garbage made the collector run several times as often as the
// checks alone do; the mark workers of each cycle take the Ps the API's
// goroutine waits for. A value encoding/json would write differently, or
// refuse (a NaN, a time outside years 0-9999, a string it escapes), sends
// the whole body back to encoding/json.

// jsonBufs holds the buffers of bodies written by writeAppended.
var jsonBufs = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBuf bounds the buffers kept for reuse (a page of 100 proxies
// is about 45 KB).
const maxPooledBuf = 256 << 10

// jsonAppender is a body appendJSON writes as json.Encoder.Encode does
// (newline included), or reports false for encoding/json to write.
type jsonAppender interface {
	appendJSON(b []byte) ([]byte, bool)
}

// writeAppended answers with v as JSON, as writeJSON does.
func writeAppended(w http.ResponseWriter, code int, v jsonAppender) {
	bp := jsonBufs.Get().(*[]byte)
	b, ok := v.appendJSON((*bp)[:0])
	if !ok {
		putBuf(bp, b)
		writeJSON(w, code, v)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(b)
	putBuf(bp, b)
}

func putBuf(bp *[]byte, b []byte) {
	if cap(b) > maxPooledBuf {
		return
	}
	*bp = b[:0]
	jsonBufs.Put(bp)
}

// appendJSON implements jsonAppender.
func (l ProxyList) appendJSON(b []byte) ([]byte, bool) {
	if l.ClusterAnswer != nil {
		return b, false
	}
	b = append(b, `{"total":`...)
	b = strconv.AppendInt(b, int64(l.Total), 10)
	b = append(b, `,"proxies":`...)
	if l.Proxies == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range l.Proxies {
			if i > 0 {
				b = append(b, ',')
			}
			var ok bool
			if b, ok = l.Proxies[i].appendJSON(b); !ok {
				return b, false
			}
		}
		b = append(b, ']')
	}
	return append(b, "}\n"...), true
}

// appendJSON appends p as encoding/json marshals it; false when
// encoding/json must.
func (p *Proxy) appendJSON(b []byte) ([]byte, bool) {
	ok := true
	str := func(b []byte, key, s string) []byte {
		b = append(b, key...)
		var good bool
		b, good = appendJSONString(b, s)
		ok = ok && good
		return b
	}
	tm := func(b []byte, key string, t *time.Time) []byte {
		b = append(b, key...)
		var good bool
		b, good = appendJSONTime(b, t)
		ok = ok && good
		return b
	}
	num := func(b []byte, key string, f float64) []byte {
		b = append(b, key...)
		var good bool
		b, good = appendJSONFloat(b, f)
		ok = ok && good
		return b
	}
	b = str(b, `{"id":`, p.ID)
	b = str(b, `,"url":`, p.URL)
	b = str(b, `,"source":`, p.Source)
	b = str(b, `,"state":`, p.State)
	b = append(b, `,"consecutive_failures":`...)
	b = strconv.AppendUint(b, uint64(p.ConsecutiveFailures), 10)
	b = append(b, `,"consecutive_successes":`...)
	b = strconv.AppendUint(b, uint64(p.ConsecutiveSuccesses), 10)
	b = tm(b, `,"last_check_at":`, p.LastCheckAt)
	b = str(b, `,"last_error_class":`, p.LastErrorClass)
	b = num(b, `,"latency_ms":`, p.LatencyMS)
	b = num(b, `,"success_rate_1h":`, p.SuccessRate1h)
	b = tm(b, `,"next_check_at":`, p.NextCheckAt)
	b = append(b, `,"paused":`...)
	b = strconv.AppendBool(b, p.Paused)
	b = append(b, `,"ejected":`...)
	b = strconv.AppendBool(b, p.Ejected)
	b = tm(b, `,"ejected_until":`, p.EjectedUntil)
	b = tm(b, `,"last_success_at":`, p.LastSuccessAt)
	b = append(b, `,"tags":`...)
	if p.Tags == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, t := range p.Tags {
			if i > 0 {
				b = append(b, ',')
			}
			var good bool
			b, good = appendJSONString(b, t)
			ok = ok && good
		}
		b = append(b, ']')
	}
	b = num(b, `,"weight":`, p.Weight)
	b = str(b, `,"exit_ip":`, p.ExitIP)
	b = str(b, `,"anonymity":`, p.Anonymity)
	return append(b, '}'), ok
}

// appendJSONString appends s quoted; false (s not appended) when
// encoding/json would escape a byte of it (with HTML escaping, as
// json.Encoder does by default).
func appendJSONString(b []byte, s string) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return b, false
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), true
}

// appendJSONTime appends t as time.Time.MarshalJSON writes it (null for
// nil); false when MarshalJSON fails (a year outside 0-9999).
func appendJSONTime(b []byte, t *time.Time) ([]byte, bool) {
	if t == nil {
		return append(b, "null"...), true
	}
	out, err := t.AppendText(append(b, '"'))
	if err != nil { // AppendText returns nil then
		return b, false
	}
	return append(out, '"'), true
}

// appendJSONFloat appends f as encoding/json writes a float64; false for
// NaN and the infinities, which it refuses.
func appendJSONFloat(b []byte, f float64) ([]byte, bool) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, false
	}
	// encoding/json's floatEncoder: ES6 number formatting.
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, true
}

// appendJSON implements jsonAppender.
func (p Pool) appendJSON(b []byte) ([]byte, bool) {
	if p.Cluster != nil || p.ClusterAnswer != nil {
		return b, false
	}
	b, ok := p.Counts.appendFields(append(b, '{'))
	b = append(b, `,"sources":`...)
	if p.Sources == nil {
		b = append(b, "null"...)
	} else {
		var small [8]string
		names := small[:0]
		for name := range p.Sources {
			names = append(names, name)
		}
		slices.Sort(names)
		b = append(b, '{')
		for i, name := range names {
			if i > 0 {
				b = append(b, ',')
			}
			var good bool
			b, good = appendJSONString(b, name)
			b = append(b, ':')
			ok = ok && good
			if b, good = p.Sources[name].appendJSON(b); !good {
				return b, false
			}
		}
		b = append(b, '}')
	}
	b = append(b, `,"journal_seq":`...)
	b = strconv.AppendUint(b, p.JournalSeq, 10)
	b = append(b, `,"updated_at":`...)
	var good bool
	b, good = appendJSONTime(b, p.UpdatedAt)
	ok = ok && good
	if p.Journal != nil {
		b = append(b, `,"journal":`...)
		if b, good = p.Journal.appendJSON(b); !good {
			return b, false
		}
	}
	if len(p.Projections) > 0 {
		b = append(b, `,"projections":[`...)
		for i := range p.Projections {
			if i > 0 {
				b = append(b, ',')
			}
			if b, good = p.Projections[i].appendJSON(b); !good {
				return b, false
			}
		}
		b = append(b, ']')
	}
	b = append(b, `,"panic_mode":`...)
	b = strconv.AppendBool(b, p.PanicMode)
	return append(b, "}\n"...), ok
}

// appendFields appends c's fields, as encoding/json writes them in a
// struct that embeds Counts first (no braces).
func (c *Counts) appendFields(b []byte) ([]byte, bool) {
	for _, f := range [...]struct {
		key string
		n   int
	}{{`"total":`, c.Total}, {`,"healthy":`, c.Healthy}, {`,"degraded":`, c.Degraded}, {`,"unhealthy":`, c.Unhealthy},
		{`,"recovering":`, c.Recovering}, {`,"failed":`, c.Failed}, {`,"unknown":`, c.Unknown}, {`,"checking":`, c.Checking}} {
		b = append(b, f.key...)
		b = strconv.AppendInt(b, int64(f.n), 10)
	}
	b = append(b, `,"health_percentage":`...)
	b, ok := appendJSONFloat(b, c.HealthPercentage)
	b = append(b, `,"paused":`...)
	b = strconv.AppendInt(b, int64(c.Paused), 10)
	b = append(b, `,"ejected":`...)
	b = strconv.AppendInt(b, int64(c.Ejected), 10)
	return b, ok
}

// appendJSON appends s as encoding/json marshals it; false when
// encoding/json must.
func (s SourceCounts) appendJSON(b []byte) ([]byte, bool) {
	b = append(b, '{')
	b, ok := s.Counts.appendFields(b)
	var good bool
	b = append(b, `,"avg_latency_ms":`...)
	b, good = appendJSONFloat(b, s.AvgLatencyMS)
	ok = ok && good
	b = append(b, `,"last_refresh":`...)
	b, good = appendJSONTime(b, s.LastRefresh)
	ok = ok && good
	b = append(b, `,"last_error":`...)
	b, good = appendJSONString(b, s.LastError)
	ok = ok && good
	if s.HeldList {
		b = append(b, `,"held_list":true`...)
	}
	return append(b, '}'), ok
}

// appendJSON appends j as encoding/json marshals it; false when
// encoding/json must.
func (j *JournalStatus) appendJSON(b []byte) ([]byte, bool) {
	b = append(b, `{"status":`...)
	b, ok := appendJSONString(b, j.Status)
	var good bool
	if j.Error != "" {
		b = append(b, `,"error":`...)
		b, good = appendJSONString(b, j.Error)
		ok = ok && good
	}
	b = append(b, `,"since":`...)
	b, good = appendJSONTime(b, j.Since)
	ok = ok && good
	b = append(b, `,"failed_commits":`...)
	b = strconv.AppendUint(b, j.FailedCommits, 10)
	b = append(b, `,"last_commit_at":`...)
	b, good = appendJSONTime(b, j.LastCommitAt)
	ok = ok && good
	b = append(b, `,"head":`...)
	b = strconv.AppendUint(b, j.Head, 10)
	return append(b, '}'), ok
}

// appendJSON appends p as encoding/json marshals it; false when
// encoding/json must.
func (p *ProjectionStatus) appendJSON(b []byte) ([]byte, bool) {
	b = append(b, `{"name":`...)
	b, ok := appendJSONString(b, p.Name)
	var good bool
	b = append(b, `,"state":`...)
	b, good = appendJSONString(b, p.State)
	ok = ok && good
	if p.Error != "" {
		b = append(b, `,"error":`...)
		b, good = appendJSONString(b, p.Error)
		ok = ok && good
	}
	b = append(b, `,"since":`...)
	b, good = appendJSONTime(b, p.Since)
	ok = ok && good
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, p.Seq, 10)
	b = append(b, `,"lag":`...)
	b = strconv.AppendUint(b, p.Lag, 10)
	return append(b, '}'), ok
}
