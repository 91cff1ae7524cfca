package membership

import (
	"fmt"
	"log/slog"
	"sync"

	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// maxWarnedTypes bounds the set of type names warned about (a peer could
// send endless names).
const maxWarnedTypes = 256

// guard is a gRPC stream interceptor on the member's remote server. It
// removes from each incoming message batch the envelopes protoactor's
// endpoint reader would crash on: a type name the proto serializer does
// not know (it dereferences the nil type it finds, remote/
// proto_serializer.go), a serializer that is not registered, a type,
// target or sender index out of range. Each dropped type name is warned
// about once. As a second line, a panic in the stream handler closes
// that stream instead of the process.
type guard struct {
	log *slog.Logger

	mu      sync.Mutex
	warned  map[string]struct{}
	dropped uint64
}

func newGuard(log *slog.Logger) *guard {
	return &guard{log: log, warned: map[string]struct{}{}}
}

func (g *guard) intercept(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			g.log.Error("membership: a remote stream's handler panicked; closed the stream", "panic", fmt.Sprint(r))
			err = status.Error(codes.Internal, "membership: the remote stream's handler panicked")
		}
	}()
	return handler(srv, &guardedStream{ServerStream: ss, g: g})
}

type guardedStream struct {
	grpc.ServerStream
	g *guard
}

func (s *guardedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if rm, ok := m.(*remote.RemoteMessage); ok {
		if b := rm.GetMessageBatch(); b != nil {
			s.g.filter(b)
		}
	}
	return nil
}

func (g *guard) filter(b *remote.MessageBatch) {
	kept := b.Envelopes[:0]
	for _, e := range b.Envelopes {
		if name, why := check(b, e); why != "" {
			g.drop(name, why)
			continue
		}
		kept = append(kept, e)
	}
	clear(b.Envelopes[len(kept):])
	b.Envelopes = kept
}

// check returns why protoactor could not take envelope e of batch b
// ("" = it can) and its type name.
func check(b *remote.MessageBatch, e *remote.MessageEnvelope) (name, why string) {
	if e == nil {
		return "", "empty envelope"
	}
	if e.TypeId < 0 || int(e.TypeId) >= len(b.TypeNames) {
		return "", "type index out of range"
	}
	name = b.TypeNames[e.TypeId]
	if e.Target < 0 || int(e.Target) >= len(b.Targets) || b.Targets[e.Target] == nil {
		return name, "target index out of range"
	}
	if e.Sender < 0 || int(e.Sender) > len(b.Senders) || (e.Sender > 0 && b.Senders[e.Sender-1] == nil) {
		return name, "sender index out of range"
	}
	switch e.SerializerId {
	case 0: // protobuf: the type must be linked into this binary
		if _, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(name)); err != nil {
			return name, "message type unknown to this member (not linked into this binary)"
		}
	case 1: // JSON: an unknown type arrives as a remote.JsonMessage
	default:
		return name, fmt.Sprintf("unknown serializer %d", e.SerializerId)
	}
	return name, ""
}

func (g *guard) drop(name, why string) {
	if len(name) > 200 {
		name = name[:200] + "…"
	}
	g.mu.Lock()
	g.dropped++
	_, seen := g.warned[name]
	if !seen && len(g.warned) < maxWarnedTypes {
		g.warned[name] = struct{}{}
	} else {
		seen = true
	}
	g.mu.Unlock()
	if !seen {
		g.log.Warn("membership: dropped a remote message protoactor cannot take (further ones of this type are dropped silently)",
			"type", name, "reason", why)
	}
}

func (g *guard) droppedCount() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.dropped
}
