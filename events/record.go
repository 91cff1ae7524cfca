package events

import (
	"time"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// Record is the flat, JSON-friendly form of an envelope used by the audit
// trail (`proxyhealth journal replay`), the HTTP event stream and webhooks.
// Fields that do not apply to the event are omitted.
type Record struct {
	Seq       uint64 `json:"seq"`
	StreamSeq uint64 `json:"stream_seq,omitempty"`
	At        string `json:"at"` // RFC 3339 with nanoseconds, UTC
	ProxyID   string `json:"proxy_id,omitempty"`
	Source    string `json:"source,omitempty"`
	Type      string `json:"type"`

	URL            string   `json:"url,omitempty"` // always without credentials
	HasCredentials bool     `json:"has_credentials,omitempty"`
	ConfigRef      string   `json:"config_ref,omitempty"`
	From           string   `json:"from,omitempty"`
	To             string   `json:"to,omitempty"`
	Reason         string   `json:"reason,omitempty"`
	Attempt        uint32   `json:"recovery_attempt,omitempty"`
	ErrorClass     string   `json:"error_class,omitempty"`
	Message        string   `json:"message,omitempty"`
	StatusCode     uint32   `json:"status_code,omitempty"`
	LatencyMS      *float64 `json:"latency_ms,omitempty"`
	ConnectMS      *float64 `json:"connect_ms,omitempty"`
	FirstByteMS    *float64 `json:"first_byte_ms,omitempty"`
	Consecutive    uint32   `json:"consecutive,omitempty"`
	HealthyPct     *float64 `json:"healthy_percentage,omitempty"`
	ThresholdPct   *float64 `json:"threshold_percentage,omitempty"`
	Healthy        *uint32  `json:"healthy,omitempty"`
	Total          *uint32  `json:"total,omitempty"`
	// Until (RFC 3339, UTC) and Multiplier: a proxy_ejected's end and
	// multiplier.
	Until      string `json:"until,omitempty"`
	Multiplier uint32 `json:"multiplier,omitempty"`
	// Usable and Candidates: a pool_panic_entered/left's counts.
	Usable     *uint32 `json:"usable,omitempty"`
	Candidates *uint32 `json:"candidates,omitempty"`
	// FromMember: a proxy_adopted's previous owner (a cluster member's
	// address); From is the state here before, To the adopted state.
	FromMember string `json:"from_member,omitempty"`
}

// RecordOf flattens an envelope.
func RecordOf(env *pb.Envelope) Record {
	r := Record{
		Seq:       env.GetSeq(),
		StreamSeq: env.GetStreamSeq(),
		At:        time.Unix(0, env.GetAtUnixNano()).UTC().Format(time.RFC3339Nano),
		ProxyID:   env.GetProxyId(),
		Source:    env.GetSource(),
		Type:      TypeName(env),
	}
	ms := func(ns int64) *float64 { v := float64(ns) / 1e6; return &v }
	lat := func(l *pb.Latency) {
		if l == nil {
			return
		}
		r.LatencyMS, r.ConnectMS, r.FirstByteMS = ms(l.GetTotalNs()), ms(l.GetConnectNs()), ms(l.GetFirstByteNs())
	}
	switch e := env.GetEvent().(type) {
	case *pb.Envelope_ProxyAdded:
		r.URL = e.ProxyAdded.GetUrlRedacted()
		r.HasCredentials = e.ProxyAdded.GetHasCredentials()
		r.ConfigRef = e.ProxyAdded.GetCheckConfigRef()
	case *pb.Envelope_ProxyRemoved:
		r.Reason = e.ProxyRemoved.GetReason()
	case *pb.Envelope_CheckSucceeded:
		r.StatusCode = e.CheckSucceeded.GetStatusCode()
		lat(e.CheckSucceeded.GetLatency())
	case *pb.Envelope_CheckFailed:
		r.ErrorClass = ClassName(e.CheckFailed.GetClass())
		r.StatusCode = e.CheckFailed.GetStatusCode()
		r.Message = e.CheckFailed.GetMessage()
		lat(e.CheckFailed.GetLatency())
	case *pb.Envelope_StateChanged:
		r.From = StateName(e.StateChanged.GetFrom())
		r.To = StateName(e.StateChanged.GetTo())
		r.Reason = e.StateChanged.GetReason()
		r.Attempt = e.StateChanged.GetRecoveryAttempt()
	case *pb.Envelope_ProxyPaused:
		r.Reason = e.ProxyPaused.GetReason()
	case *pb.Envelope_ProxyResumed:
		r.Reason = e.ProxyResumed.GetReason()
	case *pb.Envelope_PassiveFailureReported:
		r.ErrorClass = ClassName(e.PassiveFailureReported.GetClass())
		r.Consecutive = e.PassiveFailureReported.GetConsecutive()
	case *pb.Envelope_ProxyRevived:
		r.Reason = e.ProxyRevived.GetReason()
	case *pb.Envelope_PoolDegraded:
		p := e.PoolDegraded
		h, t, hp, tp := p.GetHealthy(), p.GetTotal(), p.GetHealthyPercentage(), p.GetThresholdPercentage()
		r.Healthy, r.Total, r.HealthyPct, r.ThresholdPct = &h, &t, &hp, &tp
	case *pb.Envelope_PoolRecovered:
		p := e.PoolRecovered
		h, t, hp, tp := p.GetHealthy(), p.GetTotal(), p.GetHealthyPercentage(), p.GetThresholdPercentage()
		r.Healthy, r.Total, r.HealthyPct, r.ThresholdPct = &h, &t, &hp, &tp
	case *pb.Envelope_ProxyEjected:
		p := e.ProxyEjected
		r.ErrorClass, r.Consecutive, r.Multiplier = ClassName(p.GetClass()), p.GetConsecutive(), p.GetMultiplier()
		r.Until = time.Unix(0, p.GetUntilUnixNano()).UTC().Format(time.RFC3339Nano)
	case *pb.Envelope_ProxyReturned:
		r.Reason = e.ProxyReturned.GetReason()
	case *pb.Envelope_PoolPanicEntered:
		p := e.PoolPanicEntered
		u, c, tp := p.GetUsable(), p.GetCandidates(), p.GetThresholdPercentage()
		r.Usable, r.Candidates, r.ThresholdPct = &u, &c, &tp
	case *pb.Envelope_PoolPanicLeft:
		p := e.PoolPanicLeft
		u, c, tp := p.GetUsable(), p.GetCandidates(), p.GetThresholdPercentage()
		r.Usable, r.Candidates, r.ThresholdPct = &u, &c, &tp
	case *pb.Envelope_ProxyAdopted:
		a := e.ProxyAdopted
		r.FromMember, r.Reason = a.GetFromMember(), a.GetReason()
		r.From, r.To = StateName(a.GetPrevious()), StateName(a.GetState().GetState())
		r.Attempt, r.Consecutive = a.GetState().GetRecoveryAttempt(), a.GetState().GetConsecutiveFailures()
		if c := a.GetState().GetLastErrorClass(); c != pb.FailureClass_FAILURE_CLASS_UNSPECIFIED {
			r.ErrorClass = ClassName(c)
		}
	}
	return r
}
