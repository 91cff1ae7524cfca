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

// jsonOut is a body being appended: ok turns false at the first value
// encoding/json would write otherwise (the caller then leaves the whole
// body to it). Each method appends key, then the value.
type jsonOut struct {
	b  []byte
	ok bool
}

func (o *jsonOut) raw(s string) { o.b = append(o.b, s...) }

func (o *jsonOut) check(b []byte, good bool) {
	o.b, o.ok = b, o.ok && good
}

func (o *jsonOut) str(key, s string) { o.raw(key); o.check(appendJSONString(o.b, s)) }

func (o *jsonOut) time(key string, t *time.Time) { o.raw(key); o.check(appendJSONTime(o.b, t)) }

func (o *jsonOut) num(key string, f float64) { o.raw(key); o.check(appendJSONFloat(o.b, f)) }

func (o *jsonOut) int(key string, n int64) { o.raw(key); o.b = strconv.AppendInt(o.b, n, 10) }

func (o *jsonOut) uint(key string, n uint64) { o.raw(key); o.b = strconv.AppendUint(o.b, n, 10) }

func (o *jsonOut) bool(key string, v bool) { o.raw(key); o.b = strconv.AppendBool(o.b, v) }

// strs appends key and ss as a JSON array (null for nil).
func (o *jsonOut) strs(key string, ss []string) {
	o.raw(key)
	if ss == nil {
		o.raw("null")
		return
	}
	o.raw("[")
	for i, s := range ss {
		if i > 0 {
			o.raw(",")
		}
		o.check(appendJSONString(o.b, s))
	}
	o.raw("]")
}

// appendJSON implements jsonAppender.
func (l ProxyList) appendJSON(b []byte) ([]byte, bool) {
	if l.ClusterAnswer != nil {
		return b, false
	}
	o := jsonOut{b: b, ok: true}
	o.int(`{"total":`, int64(l.Total))
	o.raw(`,"proxies":`)
	if l.Proxies == nil {
		o.raw("null")
	} else {
		o.raw("[")
		for i := range l.Proxies {
			if i > 0 {
				o.raw(",")
			}
			l.Proxies[i].appendTo(&o)
		}
		o.raw("]")
	}
	o.raw("}\n")
	return o.b, o.ok
}

// appendTo appends p as encoding/json marshals it.
func (p *Proxy) appendTo(o *jsonOut) {
	o.str(`{"id":`, p.ID)
	o.str(`,"url":`, p.URL)
	o.str(`,"source":`, p.Source)
	o.str(`,"state":`, p.State)
	o.uint(`,"consecutive_failures":`, uint64(p.ConsecutiveFailures))
	o.uint(`,"consecutive_successes":`, uint64(p.ConsecutiveSuccesses))
	o.time(`,"last_check_at":`, p.LastCheckAt)
	o.str(`,"last_error_class":`, p.LastErrorClass)
	o.num(`,"latency_ms":`, p.LatencyMS)
	o.num(`,"success_rate_1h":`, p.SuccessRate1h)
	o.time(`,"next_check_at":`, p.NextCheckAt)
	o.bool(`,"paused":`, p.Paused)
	o.bool(`,"ejected":`, p.Ejected)
	o.time(`,"ejected_until":`, p.EjectedUntil)
	o.time(`,"last_success_at":`, p.LastSuccessAt)
	o.strs(`,"tags":`, p.Tags)
	o.num(`,"weight":`, p.Weight)
	o.str(`,"exit_ip":`, p.ExitIP)
	o.str(`,"anonymity":`, p.Anonymity)
	o.raw("}")
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
	o := jsonOut{b: b, ok: true}
	o.raw("{")
	p.Counts.appendFields(&o)
	o.raw(`,"sources":`)
	if p.Sources == nil {
		o.raw("null")
	} else {
		var small [8]string
		names := small[:0]
		for name := range p.Sources {
			names = append(names, name)
		}
		slices.Sort(names)
		o.raw("{")
		for i, name := range names {
			if i > 0 {
				o.raw(",")
			}
			o.str("", name)
			o.raw(":")
			p.Sources[name].appendTo(&o)
		}
		o.raw("}")
	}
	o.uint(`,"journal_seq":`, p.JournalSeq)
	o.time(`,"updated_at":`, p.UpdatedAt)
	if p.Journal != nil {
		o.raw(`,"journal":`)
		p.Journal.appendTo(&o)
	}
	if len(p.Projections) > 0 {
		o.raw(`,"projections":[`)
		for i := range p.Projections {
			if i > 0 {
				o.raw(",")
			}
			p.Projections[i].appendTo(&o)
		}
		o.raw("]")
	}
	o.bool(`,"panic_mode":`, p.PanicMode)
	o.raw("}\n")
	return o.b, o.ok
}

// appendFields appends c's fields, as encoding/json writes them in a
// struct that embeds Counts first (no braces).
func (c *Counts) appendFields(o *jsonOut) {
	o.int(`"total":`, int64(c.Total))
	o.int(`,"healthy":`, int64(c.Healthy))
	o.int(`,"degraded":`, int64(c.Degraded))
	o.int(`,"unhealthy":`, int64(c.Unhealthy))
	o.int(`,"recovering":`, int64(c.Recovering))
	o.int(`,"failed":`, int64(c.Failed))
	o.int(`,"unknown":`, int64(c.Unknown))
	o.int(`,"checking":`, int64(c.Checking))
	o.num(`,"health_percentage":`, c.HealthPercentage)
	o.int(`,"paused":`, int64(c.Paused))
	o.int(`,"ejected":`, int64(c.Ejected))
}

// appendTo appends s as encoding/json marshals it.
func (s SourceCounts) appendTo(o *jsonOut) {
	o.raw("{")
	s.Counts.appendFields(o)
	o.num(`,"avg_latency_ms":`, s.AvgLatencyMS)
	o.time(`,"last_refresh":`, s.LastRefresh)
	o.str(`,"last_error":`, s.LastError)
	if s.HeldList {
		o.raw(`,"held_list":true`)
	}
	o.raw("}")
}

// appendTo appends j as encoding/json marshals it.
func (j *JournalStatus) appendTo(o *jsonOut) {
	o.str(`{"status":`, j.Status)
	if j.Error != "" {
		o.str(`,"error":`, j.Error)
	}
	o.time(`,"since":`, j.Since)
	o.uint(`,"failed_commits":`, j.FailedCommits)
	o.time(`,"last_commit_at":`, j.LastCommitAt)
	o.uint(`,"head":`, j.Head)
	o.raw("}")
}

// appendTo appends p as encoding/json marshals it.
func (p *ProjectionStatus) appendTo(o *jsonOut) {
	o.str(`{"name":`, p.Name)
	o.str(`,"state":`, p.State)
	if p.Error != "" {
		o.str(`,"error":`, p.Error)
	}
	o.time(`,"since":`, p.Since)
	o.uint(`,"seq":`, p.Seq)
	o.uint(`,"lag":`, p.Lag)
	o.raw("}")
}
