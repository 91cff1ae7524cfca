package membership

import (
	"log/slog"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/proxyhealth/proxyhealth/internal/etcdtest"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const unknownType = "proxyhealth.membershiptest.OnlyTheSenderKnows"

// unknownMessage builds a message of a type that is in no registry of
// this process: only the sender "knows" it, as a member of a newer build
// would.
func unknownMessage(t *testing.T, text string) proto.Message {
	t.Helper()
	fd := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("membershiptest/unknown.proto"),
		Package: proto.String("proxyhealth.membershiptest"),
		Syntax:  proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("OnlyTheSenderKnows"),
			Field: []*descriptorpb.FieldDescriptorProto{{
				Name: proto.String("text"), JsonName: proto.String("text"), Number: proto.Int32(1),
				Type:  descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(),
				Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
			}},
		}},
	}
	f, err := protodesc.NewFile(fd, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	md := f.Messages().Get(0)
	if _, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName()); err == nil {
		t.Fatalf("%s is registered: the test needs a type the receiver does not know", md.FullName())
	}
	msg := dynamicpb.NewMessage(md)
	msg.Set(md.Fields().ByName("text"), protoreflect.ValueOfString(text))
	return msg
}

// A member that receives a message of a type it does not know drops it
// (one warning per type name) and keeps running: it takes the next known
// message. Without the guard protoactor's proto serializer dereferences
// nil and the test process dies.
func TestUnknownMessageTypeDoesNotCrashAMember(t *testing.T) {
	e := etcdtest.Start(t)
	rec := &recorder{}
	sender := join(t, e, testConfig(e, "guard"))
	cfg := testConfig(e, "guard")
	cfg.Logger = slog.New(rec)
	receiver := join(t, e, cfg)

	got := make(chan proto.Message, 16)
	_, err := receiver.Cluster().ActorSystem.Root.SpawnNamed(actor.PropsFromFunc(func(c actor.Context) {
		if m, ok := c.Message().(proto.Message); ok {
			if _, isPID := m.(*actor.PID); !isPID {
				got <- m
			}
		}
	}), "proxyhealth")
	if err != nil {
		t.Fatal(err)
	}
	target := actor.NewPID(receiver.Self(), "proxyhealth")
	root := sender.Cluster().ActorSystem.Root
	root.Send(target, unknownMessage(t, "first"))
	root.Send(target, unknownMessage(t, "second"))
	root.Send(target, wrapperspb.String("known"))

	select {
	case m := <-got:
		if s, ok := m.(*wrapperspb.StringValue); !ok || s.Value != "known" {
			t.Fatalf("the receiver got %T %v first, want the known message", m, m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the known message after the unknown ones did not arrive")
	}
	// And the stream still carries messages afterwards.
	root.Send(target, unknownMessage(t, "third"))
	root.Send(target, wrapperspb.String("again"))
	select {
	case m := <-got:
		if s, ok := m.(*wrapperspb.StringValue); !ok || s.Value != "again" {
			t.Fatalf("the receiver got %T %v, want the second known message", m, m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second known message did not arrive")
	}
	if n := receiver.guard.droppedCount(); n != 3 {
		t.Errorf("the guard dropped %d messages, want 3", n)
	}
	if n := rec.count(slog.LevelWarn, "dropped a remote message", unknownType); n != 1 {
		t.Errorf("%d warnings naming %s, want 1", n, unknownType)
	}
}

// The guard's checks of a batch, one envelope at a time.
func TestGuardDropsWhatTheEndpointReaderCannotTake(t *testing.T) {
	pid := actor.NewPID("127.0.0.1:1", "x")
	known := string(proto.MessageName(&wrapperspb.StringValue{}))
	b := &remote.MessageBatch{
		TypeNames: []string{known, unknownType},
		Targets:   []*actor.PID{pid, nil},
		Senders:   []*actor.PID{pid},
		Envelopes: []*remote.MessageEnvelope{
			{TypeId: 0, Target: 0},                  // kept
			{TypeId: 1, Target: 0},                  // unknown type
			{TypeId: 2, Target: 0},                  // type index out of range
			{TypeId: 0, Target: 1},                  // nil target
			{TypeId: 0, Target: 5},                  // target out of range
			{TypeId: 0, Target: 0, Sender: 2},       // sender out of range
			{TypeId: 0, Target: 0, SerializerId: 7}, // no such serializer
			{TypeId: 0, Target: 0, SerializerId: 1}, // JSON: kept
			nil,                                     // empty
			{TypeId: 0, Target: 0, Sender: 1},       // kept
			{TypeId: -1, Target: 0},                 // negative index
			{TypeId: 1, Target: 0, SerializerId: 1}, // JSON of an unknown type: kept (a JsonMessage)
		},
	}
	rec := &recorder{}
	g := newGuard(slog.New(rec))
	g.filter(b)
	if len(b.Envelopes) != 4 {
		t.Fatalf("kept %d envelopes, want 4: %v", len(b.Envelopes), b.Envelopes)
	}
	if g.droppedCount() != 8 {
		t.Errorf("dropped %d, want 8", g.droppedCount())
	}
}
