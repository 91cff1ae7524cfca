// Package fold holds what every projection needs to fold a proxy's stream
// onto an events.State when the projection has no state for the proxy yet:
// either the stream starts here (ProxyAdded), or the start of the stream was
// deleted by journal retention and the proxy's latest snapshot takes its
// place.
package fold

import (
	"context"
	"errors"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/journal"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// Loader loads a proxy's latest snapshot; journal.Journal's LoadSnapshot
// method has this signature. An error wrapping journal.ErrNoSnapshot means
// the proxy has none.
type Loader func(ctx context.Context, proxyID string) (*pb.ProxySnapshot, error)

// Base returns the state on which env must be folded (with events.Evolve)
// for a proxy the caller holds no state for:
//
//   - ProxyAdded starts (or restarts) a stream: the state before it;
//   - any other event means the stream's beginning was retained away: the
//     proxy's latest snapshot, if load finds one; skip is then true when the
//     snapshot already covers env (the snapshot was taken after env), and
//     env must not be folded again;
//   - without a snapshot (or a loader), the proxy is adopted as added, in
//     the envelope's source, with nothing else known: best effort.
//
// Only errors other than "no snapshot" are returned.
func Base(ctx context.Context, load Loader, env *pb.Envelope) (s events.State, skip bool, err error) {
	if _, added := env.GetEvent().(*pb.Envelope_ProxyAdded); added || load == nil {
		return adopt(env), false, nil
	}
	snap, err := load(ctx, env.GetProxyId())
	if errors.Is(err, journal.ErrNoSnapshot) {
		return adopt(env), false, nil
	}
	if err != nil {
		return events.State{}, false, err
	}
	s = events.FromSnapshot(snap)
	if s.ProxyID == "" {
		s.ProxyID = env.GetProxyId()
	}
	return s, env.GetStreamSeq() != 0 && env.GetStreamSeq() <= s.StreamSeq, nil
}

// adopt returns the state of a proxy known only from env.
func adopt(env *pb.Envelope) events.State {
	s := events.NewState(env.GetProxyId())
	if _, added := env.GetEvent().(*pb.Envelope_ProxyAdded); !added {
		s.Added = true
		s.Source = env.GetSource()
	}
	return s
}

// Covered reports whether env is already folded into s (a duplicate, or an
// event older than the snapshot s was restored from).
func Covered(s events.State, env *pb.Envelope) bool {
	return env.GetStreamSeq() != 0 && env.GetStreamSeq() <= s.StreamSeq
}
