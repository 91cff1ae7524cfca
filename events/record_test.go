package events

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// TestRecordsCarryTheRotationEvents: an ejection's class, streak, end and
// multiplier, a return's reason and a panic episode's counts reach the flat
// record (journal replay --format json, GET /v1/journal).
func TestRecordsCarryTheRotationEvents(t *testing.T) {
	until := t0.Add(30 * time.Second)
	cases := []struct {
		env  *pb.Envelope
		want []string
	}{
		{&pb.Envelope{Event: &pb.Envelope_ProxyEjected{ProxyEjected: &pb.ProxyEjected{
			Class: pb.FailureClass_FAILURE_CLASS_REFUSED, Consecutive: 3, UntilUnixNano: until.UnixNano(), Multiplier: 2}}},
			[]string{`"type":"proxy_ejected"`, `"error_class":"refused"`, `"consecutive":3`, `"until":"2025-03-04T05:06:37Z"`, `"multiplier":2`}},
		{&pb.Envelope{Event: &pb.Envelope_ProxyReturned{ProxyReturned: &pb.ProxyReturned{Reason: "ejection of 30s ended"}}},
			[]string{`"type":"proxy_returned"`, `"reason":"ejection of 30s ended"`}},
		{&pb.Envelope{Event: &pb.Envelope_PoolPanicEntered{PoolPanicEntered: &pb.PoolPanicEntered{Usable: 1, Candidates: 4, ThresholdPercentage: 50}}},
			[]string{`"type":"pool_panic_entered"`, `"usable":1`, `"candidates":4`, `"threshold_percentage":50`}},
		{&pb.Envelope{Event: &pb.Envelope_PoolPanicLeft{PoolPanicLeft: &pb.PoolPanicLeft{Usable: 0, Candidates: 4, ThresholdPercentage: 50}}},
			[]string{`"type":"pool_panic_left"`, `"usable":0`, `"candidates":4`}},
	}
	for _, c := range cases {
		b, err := json.Marshal(RecordOf(c.env))
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range c.want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s: no %s", b, w)
			}
		}
	}
}
