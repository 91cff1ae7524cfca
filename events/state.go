package events

import (
	"fmt"
	"strings"
	"time"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
	"google.golang.org/protobuf/proto"
)

// State is the whole health state of one proxy: a fold of its stream.
// It is a plain value; Evolve returns a new one.
type State struct {
	ProxyID        string
	Source         string
	URLRedacted    string
	HasCredentials bool
	// Origin is how the proxy came in (its latest ProxyAdded).
	Origin pb.ProxyOrigin
	// Added is true once ProxyAdded has been applied.
	Added   bool
	Removed bool
	Paused  bool

	Health               pb.HealthState
	ConsecutiveSuccesses uint32
	ConsecutiveFailures  uint32
	RecoveryAttempt      uint32
	PassiveFailures      uint32
	TotalChecks          uint64
	TotalFailures        uint64

	AddedAt      time.Time
	LastCheckAt  time.Time
	LastChangeAt time.Time

	LastErrorClass pb.FailureClass
	LastError      string
	LastStatusCode uint32
	LastLatency    Latency

	// Tags are the proxy's tags, sorted and comma-separated (a string, so
	// that State stays comparable); Weight its weight (0: unset).
	Tags   string
	Weight float64
	// ExitIP and Anonymity are the last ones an echo target saw.
	ExitIP    string
	Anonymity pb.Anonymity

	// Passive outlier detection: EjectedUntil is when the proxy's ejection
	// from rotation ends (zero: in rotation); EjectionMultiplier the
	// multiplier of its last ejection; LastReturnAt when it last returned.
	EjectedUntil       time.Time
	EjectionMultiplier uint32
	LastEjectedAt      time.Time
	LastReturnAt       time.Time
	// AdoptedAt is when this cluster member last adopted the proxy's state
	// from another (zero: never); the proxy is checked at once after it.
	AdoptedAt time.Time
	// LatencyEWMA is the exponentially weighted moving average (EWMAAlpha)
	// of the successful checks' total latency, when HasLatencyEWMA.
	LatencyEWMA    time.Duration
	HasLatencyEWMA bool

	// StreamSeq and Seq are the stream and global sequence numbers of the
	// last envelope applied.
	StreamSeq uint64
	Seq       uint64
}

// Latency is the breakdown of one check.
type Latency struct {
	Connect, FirstByte, Total time.Duration
}

func (l Latency) toPB() *pb.Latency {
	return &pb.Latency{ConnectNs: int64(l.Connect), FirstByteNs: int64(l.FirstByte), TotalNs: int64(l.Total)}
}

// LatencyFromPB converts a journaled latency (nil-safe).
func LatencyFromPB(l *pb.Latency) Latency {
	return Latency{Connect: time.Duration(l.GetConnectNs()), FirstByte: time.Duration(l.GetFirstByteNs()), Total: time.Duration(l.GetTotalNs())}
}

// NewState returns the state of a proxy before its ProxyAdded event.
func NewState(proxyID string) State { return State{ProxyID: proxyID} }

// Usable reports whether the proxy should carry traffic: healthy or
// degraded, not removed and not ejected by passive outlier detection.
// Pausing stops checks, not this: a paused proxy keeps its last known
// health (pickers skip paused proxies).
func (s State) Usable() bool {
	return !s.Removed && !s.Ejected() && (s.Health == pb.HealthState_HEALTH_STATE_HEALTHY || s.Health == pb.HealthState_HEALTH_STATE_DEGRADED)
}

// TagList returns the proxy's tags (nil when it has none).
func (s State) TagList() []string {
	if s.Tags == "" {
		return nil
	}
	return strings.Split(s.Tags, ",")
}

// AnonymityName is the lowercase API name of an anonymity level:
// "transparent", "anonymous", "elite"; "" when unknown.
func AnonymityName(a pb.Anonymity) string {
	if a == pb.Anonymity_ANONYMITY_UNSPECIFIED {
		return ""
	}
	n, ok := pb.Anonymity_name[int32(a)]
	if !ok {
		return fmt.Sprintf("anonymity_%d", int32(a))
	}
	return strings.ToLower(strings.TrimPrefix(n, "ANONYMITY_"))
}

// ParseAnonymity is the inverse of AnonymityName.
func ParseAnonymity(name string) (pb.Anonymity, bool) {
	v, ok := pb.Anonymity_value["ANONYMITY_"+strings.ToUpper(name)]
	if !ok || v == 0 {
		return pb.Anonymity_ANONYMITY_UNSPECIFIED, false
	}
	return pb.Anonymity(v), true
}

// Ejected reports whether passive outlier detection has the proxy out of
// rotation (until a ProxyReturned event).
func (s State) Ejected() bool { return !s.EjectedUntil.IsZero() }

// ToSnapshot captures the state for fast recovery.
func ToSnapshot(s State) *pb.ProxySnapshot {
	return SnapshotInto(new(pb.ProxySnapshot), s)
}

// SnapshotInto is ToSnapshot into dst, which it overwrites and returns:
// for a caller that marshals one snapshot after another (the SQLite view's
// state_pb) and can reuse the message and its latency instead of
// allocating them for each. dst must not be shared with another goroutine.
func SnapshotInto(dst *pb.ProxySnapshot, s State) *pb.ProxySnapshot {
	lat := dst.GetLastLatency()
	if lat == nil {
		lat = new(pb.Latency)
	}
	lat.Reset()
	lat.ConnectNs, lat.FirstByteNs, lat.TotalNs = int64(s.LastLatency.Connect), int64(s.LastLatency.FirstByte), int64(s.LastLatency.Total)
	tags := dst.GetTags()[:0]
	if s.Tags != "" {
		tags = appendSplit(tags, s.Tags)
	} else {
		tags = nil
	}
	dst.Reset()
	dst.ProxyId = s.ProxyID
	dst.StreamSeq = s.StreamSeq
	dst.Seq = s.Seq
	dst.Source = s.Source
	dst.UrlRedacted = s.URLRedacted
	dst.HasCredentials = s.HasCredentials
	dst.Origin = s.Origin
	dst.State = s.Health
	dst.Paused = s.Paused
	dst.Removed = s.Removed
	dst.ConsecutiveSuccesses = s.ConsecutiveSuccesses
	dst.ConsecutiveFailures = s.ConsecutiveFailures
	dst.RecoveryAttempt = s.RecoveryAttempt
	dst.PassiveFailures = s.PassiveFailures
	dst.TotalChecks = s.TotalChecks
	dst.TotalFailures = s.TotalFailures
	dst.AddedUnixNano = UnixNano(s.AddedAt)
	dst.LastCheckUnixNano = UnixNano(s.LastCheckAt)
	dst.LastChangeUnixNano = UnixNano(s.LastChangeAt)
	dst.LastErrorClass = s.LastErrorClass
	dst.LastError = s.LastError
	dst.LastStatusCode = s.LastStatusCode
	dst.LastLatency = lat
	dst.EjectedUntilUnixNano = UnixNano(s.EjectedUntil)
	dst.Tags = tags
	dst.Weight = s.Weight
	dst.ExitIp = s.ExitIP
	dst.Anonymity = s.Anonymity
	dst.EjectionMultiplier = s.EjectionMultiplier
	dst.LastEjectedUnixNano = UnixNano(s.LastEjectedAt)
	dst.LastReturnUnixNano = UnixNano(s.LastReturnAt)
	dst.AdoptedUnixNano = UnixNano(s.AdoptedAt)
	dst.LatencyEwmaNs = int64(s.LatencyEWMA)
	dst.HasLatencyEwma = s.HasLatencyEWMA
	return dst
}

// appendSplit appends the comma-separated parts of s to dst (as
// strings.Split, into a slice it reuses).
func appendSplit(dst []string, s string) []string {
	for {
		i := strings.IndexByte(s, ',')
		if i < 0 {
			return append(dst, s)
		}
		dst = append(dst, s[:i])
		s = s[i+1:]
	}
}

// FromSnapshot restores a state captured by ToSnapshot.
func FromSnapshot(p *pb.ProxySnapshot) State {
	return State{
		ProxyID:              p.GetProxyId(),
		StreamSeq:            p.GetStreamSeq(),
		Seq:                  p.GetSeq(),
		Source:               p.GetSource(),
		URLRedacted:          p.GetUrlRedacted(),
		HasCredentials:       p.GetHasCredentials(),
		Origin:               p.GetOrigin(),
		Added:                p.GetStreamSeq() > 0,
		Health:               p.GetState(),
		Paused:               p.GetPaused(),
		Removed:              p.GetRemoved(),
		ConsecutiveSuccesses: p.GetConsecutiveSuccesses(),
		ConsecutiveFailures:  p.GetConsecutiveFailures(),
		RecoveryAttempt:      p.GetRecoveryAttempt(),
		PassiveFailures:      p.GetPassiveFailures(),
		TotalChecks:          p.GetTotalChecks(),
		TotalFailures:        p.GetTotalFailures(),
		AddedAt:              FromUnixNano(p.GetAddedUnixNano()),
		LastCheckAt:          FromUnixNano(p.GetLastCheckUnixNano()),
		LastChangeAt:         FromUnixNano(p.GetLastChangeUnixNano()),
		LastErrorClass:       p.GetLastErrorClass(),
		LastError:            p.GetLastError(),
		LastStatusCode:       p.GetLastStatusCode(),
		LastLatency:          LatencyFromPB(p.GetLastLatency()),
		EjectedUntil:         FromUnixNano(p.GetEjectedUntilUnixNano()),
		Tags:                 strings.Join(p.GetTags(), ","),
		Weight:               p.GetWeight(),
		ExitIP:               p.GetExitIp(),
		Anonymity:            p.GetAnonymity(),
		EjectionMultiplier:   p.GetEjectionMultiplier(),
		LastEjectedAt:        FromUnixNano(p.GetLastEjectedUnixNano()),
		LastReturnAt:         FromUnixNano(p.GetLastReturnUnixNano()),
		AdoptedAt:            FromUnixNano(p.GetAdoptedUnixNano()),
		LatencyEWMA:          time.Duration(p.GetLatencyEwmaNs()),
		HasLatencyEWMA:       p.GetHasLatencyEwma(),
	}
}

// UnixNano is how the journal and snapshots store a time: 0 for the zero
// time, else t.UnixNano(). FromUnixNano is its inverse (a UTC time).
func UnixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// FromUnixNano returns the time UnixNano stored as n (the zero time for 0).
func FromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// At returns an envelope's timestamp.
func At(env *pb.Envelope) time.Time { return FromUnixNano(env.GetAtUnixNano()) }

// StateName is the lowercase API name of a health state: "unknown",
// "healthy", "degraded", "unhealthy", "recovering", "failed".
func StateName(s pb.HealthState) string {
	if s >= 0 && int(s) < len(stateNames) && stateNames[s] != "" {
		return stateNames[s]
	}
	return stateName(s)
}

// stateNames holds StateName of the first states, made once: the live
// status names a proxy's state in every view it gives (a hundred a page
// of GET /v1/proxies) and the SQLite view in every row it writes, and
// making the name each time cost an allocation and a map lookup.
var stateNames = func() (names [8]string) {
	for i := range names {
		if _, ok := pb.HealthState_name[int32(i)]; ok {
			names[i] = stateName(pb.HealthState(i))
		}
	}
	return names
}()

func stateName(s pb.HealthState) string {
	n, ok := pb.HealthState_name[int32(s)]
	if !ok {
		return fmt.Sprintf("state_%d", int32(s))
	}
	return strings.ToLower(strings.TrimPrefix(n, "HEALTH_STATE_"))
}

// ParseState is the inverse of StateName.
func ParseState(name string) (pb.HealthState, bool) {
	v, ok := pb.HealthState_value["HEALTH_STATE_"+strings.ToUpper(name)]
	return pb.HealthState(v), ok
}

// States lists every health state in display order.
var States = []pb.HealthState{
	pb.HealthState_HEALTH_STATE_UNKNOWN, pb.HealthState_HEALTH_STATE_HEALTHY,
	pb.HealthState_HEALTH_STATE_DEGRADED, pb.HealthState_HEALTH_STATE_UNHEALTHY,
	pb.HealthState_HEALTH_STATE_RECOVERING, pb.HealthState_HEALTH_STATE_FAILED,
}

// ClassName is the lowercase API name of a failure class, e.g. "timeout",
// "proxy_auth_required"; "" for success.
func ClassName(c pb.FailureClass) string {
	if c == pb.FailureClass_FAILURE_CLASS_UNSPECIFIED {
		return ""
	}
	n, ok := pb.FailureClass_name[int32(c)]
	if !ok {
		return fmt.Sprintf("class_%d", int32(c))
	}
	return strings.ToLower(strings.TrimPrefix(n, "FAILURE_CLASS_"))
}

// ParseClass is the inverse of ClassName.
func ParseClass(name string) (pb.FailureClass, bool) {
	v, ok := pb.FailureClass_value["FAILURE_CLASS_"+strings.ToUpper(name)]
	if !ok || v == 0 {
		return pb.FailureClass_FAILURE_CLASS_UNSPECIFIED, false
	}
	return pb.FailureClass(v), true
}

// TypeName is the audit name of an envelope's event: proxy_added,
// proxy_removed, check_succeeded, check_failed, state_changed, proxy_paused,
// proxy_resumed, passive_failure, passive_success, proxy_revived,
// pool_degraded, pool_recovered, proxy_ejected, proxy_returned,
// pool_panic_entered, pool_panic_left, proxy_metadata_changed,
// exit_observed, source_refreshed, source_refresh_failed,
// source_shrink_held; "unknown" for an event this version does not
// know.
func TypeName(env *pb.Envelope) string {
	switch env.GetEvent().(type) {
	case *pb.Envelope_ProxyAdded:
		return "proxy_added"
	case *pb.Envelope_ProxyRemoved:
		return "proxy_removed"
	case *pb.Envelope_CheckSucceeded:
		return "check_succeeded"
	case *pb.Envelope_CheckFailed:
		return "check_failed"
	case *pb.Envelope_StateChanged:
		return "state_changed"
	case *pb.Envelope_ProxyPaused:
		return "proxy_paused"
	case *pb.Envelope_ProxyResumed:
		return "proxy_resumed"
	case *pb.Envelope_PassiveFailureReported:
		return "passive_failure"
	case *pb.Envelope_PassiveSuccessReported:
		return "passive_success"
	case *pb.Envelope_ProxyRevived:
		return "proxy_revived"
	case *pb.Envelope_PoolDegraded:
		return "pool_degraded"
	case *pb.Envelope_PoolRecovered:
		return "pool_recovered"
	case *pb.Envelope_ProxyEjected:
		return "proxy_ejected"
	case *pb.Envelope_ProxyReturned:
		return "proxy_returned"
	case *pb.Envelope_PoolPanicEntered:
		return "pool_panic_entered"
	case *pb.Envelope_PoolPanicLeft:
		return "pool_panic_left"
	case *pb.Envelope_ProxyMetadataChanged:
		return "proxy_metadata_changed"
	case *pb.Envelope_ExitObserved:
		return "exit_observed"
	case *pb.Envelope_SourceRefreshed:
		return "source_refreshed"
	case *pb.Envelope_SourceRefreshFailed:
		return "source_refresh_failed"
	case *pb.Envelope_SourceShrinkHeld:
		return "source_shrink_held"
	case *pb.Envelope_ProxyAdopted:
		return "proxy_adopted"
	}
	return "unknown"
}

// TypeNames lists every name TypeName returns for a known event.
var TypeNames = []string{
	"proxy_added", "proxy_removed", "check_succeeded", "check_failed", "state_changed",
	"proxy_paused", "proxy_resumed", "passive_failure", "passive_success", "proxy_revived",
	"pool_degraded", "pool_recovered", "proxy_ejected", "proxy_returned", "pool_panic_entered", "pool_panic_left",
	"proxy_metadata_changed", "exit_observed", "source_refreshed", "source_refresh_failed", "source_shrink_held",
	"proxy_adopted",
}

// Clone deep-copies an envelope (envelopes are shared by pointer between the
// journal, subscribers and projections; treat them as immutable).
func Clone(env *pb.Envelope) *pb.Envelope { return proto.Clone(env).(*pb.Envelope) }
