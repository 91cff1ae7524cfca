package journal

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// A direct codec for the envelopes of check results (CheckSucceeded and
// CheckFailed), which make up nearly every record of a journal: protobuf-go's
// generic codec spends most of the writer's marshalling and of a replay's
// decoding in its table walk, in reflection to set the oneof and in one
// allocation per message. The direct codec writes exactly the bytes
// proto.Marshal writes (fields in number order, zero scalars omitted) and
// decodes a record into one allocation holding the envelope, its oneof
// wrapper, the event and its latency. Everything else goes through
// protobuf-go: other events, unknown fields, strings that are not valid
// UTF-8 (protobuf-go reports them), and any record that is not in the
// canonical shape (a field twice, a wire type that does not match, a
// truncated value), so a record decodes to the same message either way
// (FuzzEnvelopeCodec). fastCodec is false, and the codec unused, if the
// generated messages ever differ from what it was written for
// (TestFastCodecMatchesSchema says so).
var fastCodec = schemaMatches()

// Field numbers of the messages the codec handles.
const (
	fieldSeq            = 1
	fieldStreamSeq      = 2
	fieldAt             = 3
	fieldProxyID        = 4
	fieldSource         = 5
	fieldPrevSeq        = 6
	fieldCheckSucceeded = 12
	fieldCheckFailed    = 13

	// CheckSucceeded
	fieldSucceededLatency = 1
	fieldSucceededStatus  = 2
	// CheckFailed
	fieldFailedClass   = 1
	fieldFailedStatus  = 2
	fieldFailedMessage = 3
	fieldFailedLatency = 4
	// Latency
	fieldConnect   = 1
	fieldFirstByte = 2
	fieldTotal     = 3
)

// schemaField is a field the codec knows: number, name and kind.
type schemaField struct {
	num  protoreflect.FieldNumber
	name protoreflect.Name
	kind protoreflect.Kind
}

// codecSchema is what the codec was written for: every field of the
// messages outside the event oneof (which may grow: other events take the
// generic path).
var codecSchema = map[protoreflect.FullName][]schemaField{
	"proxyhealth.v1.Envelope": {
		{fieldSeq, "seq", protoreflect.Uint64Kind},
		{fieldStreamSeq, "stream_seq", protoreflect.Uint64Kind},
		{fieldAt, "at_unix_nano", protoreflect.Int64Kind},
		{fieldProxyID, "proxy_id", protoreflect.StringKind},
		{fieldSource, "source", protoreflect.StringKind},
		{fieldPrevSeq, "prev_seq", protoreflect.Uint64Kind},
		{fieldCheckSucceeded, "check_succeeded", protoreflect.MessageKind},
		{fieldCheckFailed, "check_failed", protoreflect.MessageKind},
	},
	"proxyhealth.v1.CheckSucceeded": {
		{fieldSucceededLatency, "latency", protoreflect.MessageKind},
		{fieldSucceededStatus, "status_code", protoreflect.Uint32Kind},
	},
	"proxyhealth.v1.CheckFailed": {
		{fieldFailedClass, "class", protoreflect.EnumKind},
		{fieldFailedStatus, "status_code", protoreflect.Uint32Kind},
		{fieldFailedMessage, "message", protoreflect.StringKind},
		{fieldFailedLatency, "latency", protoreflect.MessageKind},
	},
	"proxyhealth.v1.Latency": {
		{fieldConnect, "connect_ns", protoreflect.Int64Kind},
		{fieldFirstByte, "first_byte_ns", protoreflect.Int64Kind},
		{fieldTotal, "total_ns", protoreflect.Int64Kind},
	},
}

// schemaMismatch describes how the generated messages differ from
// codecSchema ("" when they match).
func schemaMismatch() string {
	msgs := []protoreflect.MessageDescriptor{
		(*pb.Envelope)(nil).ProtoReflect().Descriptor(),
		(*pb.CheckSucceeded)(nil).ProtoReflect().Descriptor(),
		(*pb.CheckFailed)(nil).ProtoReflect().Descriptor(),
		(*pb.Latency)(nil).ProtoReflect().Descriptor(),
	}
	for _, md := range msgs {
		if md.ParentFile().Syntax() != protoreflect.Proto3 {
			return string(md.FullName()) + " is not proto3"
		}
		want := codecSchema[md.FullName()]
		fields := md.Fields()
		n := 0
		for i := range fields.Len() {
			fd := fields.Get(i)
			inEvent := fd.ContainingOneof() != nil && fd.ContainingOneof().Name() == "event"
			if inEvent && fd.Number() != fieldCheckSucceeded && fd.Number() != fieldCheckFailed {
				continue // another event: generic path
			}
			n++
			ok := false
			for _, w := range want {
				if w.num == fd.Number() {
					ok = w.name == fd.Name() && w.kind == fd.Kind() && fd.Cardinality() == protoreflect.Optional &&
						(fd.HasPresence() == (w.kind == protoreflect.MessageKind)) && !fd.IsPacked()
					break
				}
			}
			if !ok {
				return string(fd.FullName()) + " is new or changed"
			}
		}
		if n != len(want) {
			return string(md.FullName()) + " lost a field"
		}
	}
	env := msgs[0].Fields()
	switch {
	case env.ByNumber(fieldCheckSucceeded).Message() != msgs[1],
		env.ByNumber(fieldCheckFailed).Message() != msgs[2],
		msgs[1].Fields().ByNumber(fieldSucceededLatency).Message() != msgs[3],
		msgs[2].Fields().ByNumber(fieldFailedLatency).Message() != msgs[3]:
		return "a message field changed type"
	}
	return ""
}

func schemaMatches() bool { return schemaMismatch() == "" }

// appendEnvelopeFast appends e marshalled as proto.Marshal would, if the
// direct codec handles it; ok is false (and dst unchanged) otherwise.
func appendEnvelopeFast(dst []byte, e *pb.Envelope) (out []byte, ok bool) {
	ev, ok := fastEventOf(e)
	if !ok {
		return dst, false
	}
	b := appendVarintField(dst, fieldSeq, e.Seq)
	b = appendVarintField(b, fieldStreamSeq, e.StreamSeq)
	b = appendHeadFields(b, e)
	b = appendVarintField(b, fieldPrevSeq, e.PrevSeq)
	return ev.append(b), true
}

// appendBodyFast appends what appendEnvelopeFast would, less seq,
// stream_seq and prev_seq, which the writer assigns later (see
// appendSpliced); mid is where the event starts in the result.
func appendBodyFast(dst []byte, e *pb.Envelope) (out []byte, mid int, ok bool) {
	ev, ok := fastEventOf(e)
	if !ok {
		return dst, 0, false
	}
	b := appendHeadFields(dst, e)
	return ev.append(b), len(b), true
}

// appendSpliced appends an envelope from a body of appendBodyFast, with its
// event at body[mid:], and the given seqs: the bytes appendEnvelopeFast
// writes for the envelope with those seqs.
func appendSpliced(dst, body []byte, mid int, seq, streamSeq, prevSeq uint64) []byte {
	b := appendVarintField(dst, fieldSeq, seq)
	b = appendVarintField(b, fieldStreamSeq, streamSeq)
	b = append(b, body[:mid]...)
	b = appendVarintField(b, fieldPrevSeq, prevSeq)
	return append(b, body[mid:]...)
}

// appendHeadFields appends at_unix_nano, proxy_id and source.
func appendHeadFields(b []byte, e *pb.Envelope) []byte {
	b = appendVarintField(b, fieldAt, uint64(e.AtUnixNano))
	b = appendStringField(b, fieldProxyID, e.ProxyId)
	return appendStringField(b, fieldSource, e.Source)
}

// fastEvent is a check event the direct codec can marshal, sized.
type fastEvent struct {
	num           protowire.Number
	size, latSize int
	s             *pb.CheckSucceeded
	f             *pb.CheckFailed
	lat           *pb.Latency
}

// fastEventOf returns e's event if the direct codec can marshal e.
func fastEventOf(e *pb.Envelope) (ev fastEvent, ok bool) {
	if !fastCodec || len(e.ProtoReflect().GetUnknown()) > 0 ||
		!utf8.ValidString(e.ProxyId) || !utf8.ValidString(e.Source) {
		return ev, false
	}
	switch x := e.Event.(type) {
	case *pb.Envelope_CheckSucceeded:
		if ev.s = x.CheckSucceeded; ev.s == nil || len(ev.s.ProtoReflect().GetUnknown()) > 0 {
			return ev, false
		}
		ev.lat, ev.num = ev.s.Latency, fieldCheckSucceeded
	case *pb.Envelope_CheckFailed:
		if ev.f = x.CheckFailed; ev.f == nil || len(ev.f.ProtoReflect().GetUnknown()) > 0 || !utf8.ValidString(ev.f.Message) {
			return ev, false
		}
		ev.lat, ev.num = ev.f.Latency, fieldCheckFailed
	default:
		return ev, false
	}
	if ev.lat != nil {
		if len(ev.lat.ProtoReflect().GetUnknown()) > 0 {
			return ev, false
		}
		ev.latSize = sizeVarintField(uint64(ev.lat.ConnectNs)) + sizeVarintField(uint64(ev.lat.FirstByteNs)) + sizeVarintField(uint64(ev.lat.TotalNs))
		ev.size = 1 + protowire.SizeBytes(ev.latSize)
	}
	if ev.s != nil {
		ev.size += sizeVarintField(uint64(ev.s.StatusCode))
	} else {
		ev.size += sizeVarintField(uint64(int64(ev.f.Class))) + sizeVarintField(uint64(ev.f.StatusCode)) + sizeStringField(ev.f.Message)
	}
	return ev, true
}

// append appends the event's field.
func (ev *fastEvent) append(b []byte) []byte {
	b = protowire.AppendTag(b, ev.num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(ev.size))
	if ev.s != nil {
		if ev.lat != nil {
			b = appendLatency(b, fieldSucceededLatency, ev.lat, ev.latSize)
		}
		return appendVarintField(b, fieldSucceededStatus, uint64(ev.s.StatusCode))
	}
	b = appendVarintField(b, fieldFailedClass, uint64(int64(ev.f.Class)))
	b = appendVarintField(b, fieldFailedStatus, uint64(ev.f.StatusCode))
	b = appendStringField(b, fieldFailedMessage, ev.f.Message)
	if ev.lat != nil {
		b = appendLatency(b, fieldFailedLatency, ev.lat, ev.latSize)
	}
	return b
}

func appendLatency(b []byte, num protowire.Number, lat *pb.Latency, size int) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	b = appendVarintField(b, fieldConnect, uint64(lat.ConnectNs))
	b = appendVarintField(b, fieldFirstByte, uint64(lat.FirstByteNs))
	return appendVarintField(b, fieldTotal, uint64(lat.TotalNs))
}

// The codec's field numbers are below 16: every tag is one byte.

func sizeVarintField(v uint64) int {
	if v == 0 {
		return 0
	}
	return 1 + protowire.SizeVarint(v)
}

func sizeStringField(s string) int {
	if s == "" {
		return 0
	}
	return 1 + protowire.SizeBytes(len(s))
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	return protowire.AppendVarint(append(b, byte(num)<<3|byte(protowire.VarintType)), v)
}

func appendStringField(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return protowire.AppendString(append(b, byte(num)<<3|byte(protowire.BytesType)), s)
}

// succeededRecord and failedRecord are what the direct decoder allocates
// for one envelope: the envelope and every message it points to, in one
// allocation.
type succeededRecord struct {
	env  pb.Envelope
	wrap pb.Envelope_CheckSucceeded
	ev   pb.CheckSucceeded
	lat  pb.Latency
}

type failedRecord struct {
	env  pb.Envelope
	wrap pb.Envelope_CheckFailed
	ev   pb.CheckFailed
	lat  pb.Latency
}

// envelopeFields are an envelope's fields outside the event, as decoded.
type envelopeFields struct {
	seq, streamSeq, at, prevSeq uint64
	proxyID, source             []byte // alias the record
}

// decodeEnvelopeFast decodes a marshalled envelope if the direct codec
// handles it (nil otherwise: decode it with proto.Unmarshal, which also
// reports what is wrong with it). Strings are copied (interned through
// in), so the envelope does not alias p.
func decodeEnvelopeFast(p []byte, in *interner) *pb.Envelope {
	if !fastCodec {
		return nil
	}
	var f envelopeFields
	var seen uint32
	var event []byte
	var evNum protowire.Number
	for len(p) > 0 {
		if p[0] >= 0x80 {
			return nil // a tag of more than one byte: no field of the codec's
		}
		num, typ := protowire.Number(p[0]>>3), protowire.Type(p[0]&7)
		p = p[1:]
		if seen&(1<<num) != 0 {
			return nil // repeated field: protobuf-go merges or overrides
		}
		seen |= 1 << num
		var n int
		switch {
		case typ == protowire.VarintType && num >= fieldSeq && num <= fieldAt || typ == protowire.VarintType && num == fieldPrevSeq:
			var v uint64
			if v, n = protowire.ConsumeVarint(p); n < 0 {
				return nil
			}
			switch num {
			case fieldSeq:
				f.seq = v
			case fieldStreamSeq:
				f.streamSeq = v
			case fieldAt:
				f.at = v
			default:
				f.prevSeq = v
			}
		case typ == protowire.BytesType && (num == fieldProxyID || num == fieldSource):
			var v []byte
			if v, n = protowire.ConsumeBytes(p); n < 0 {
				return nil
			}
			if num == fieldProxyID {
				f.proxyID = v
			} else {
				f.source = v
			}
		case typ == protowire.BytesType && (num == fieldCheckSucceeded || num == fieldCheckFailed):
			if evNum != 0 {
				return nil // two events of the oneof: the last wins
			}
			if event, n = protowire.ConsumeBytes(p); n < 0 {
				return nil
			}
			evNum = num
		default:
			return nil
		}
		p = p[n:]
	}
	proxyID, ok1 := in.str(f.proxyID)
	source, ok2 := in.str(f.source)
	if !ok1 || !ok2 {
		return nil
	}
	switch evNum {
	case fieldCheckSucceeded:
		r := new(succeededRecord)
		if !decodeSucceeded(event, &r.ev, &r.lat) {
			return nil
		}
		r.wrap.CheckSucceeded, r.env.Event = &r.ev, &r.wrap
		return f.fill(&r.env, proxyID, source)
	case fieldCheckFailed:
		r := new(failedRecord)
		if !decodeFailed(event, &r.ev, &r.lat, in) {
			return nil
		}
		r.wrap.CheckFailed, r.env.Event = &r.ev, &r.wrap
		return f.fill(&r.env, proxyID, source)
	}
	return nil
}

// fill sets e's fields outside the event.
func (f *envelopeFields) fill(e *pb.Envelope, proxyID, source string) *pb.Envelope {
	e.Seq, e.StreamSeq, e.AtUnixNano, e.PrevSeq = f.seq, f.streamSeq, int64(f.at), f.prevSeq
	e.ProxyId, e.Source = proxyID, source
	return e
}

// decodeSucceeded decodes a CheckSucceeded into s; its latency, if
// present, into lat.
func decodeSucceeded(p []byte, s *pb.CheckSucceeded, lat *pb.Latency) bool {
	var seen uint32
	for len(p) > 0 {
		if p[0] >= 0x80 {
			return false
		}
		num, typ := protowire.Number(p[0]>>3), protowire.Type(p[0]&7)
		p = p[1:]
		if seen&(1<<num) != 0 {
			return false
		}
		seen |= 1 << num
		var n int
		switch {
		case num == fieldSucceededLatency && typ == protowire.BytesType:
			var v []byte
			if v, n = protowire.ConsumeBytes(p); n < 0 || !decodeLatency(v, lat) {
				return false
			}
			s.Latency = lat
		case num == fieldSucceededStatus && typ == protowire.VarintType:
			var v uint64
			if v, n = protowire.ConsumeVarint(p); n < 0 {
				return false
			}
			s.StatusCode = uint32(v)
		default:
			return false
		}
		p = p[n:]
	}
	return true
}

// decodeFailed decodes a CheckFailed into f; its latency, if present,
// into lat.
func decodeFailed(p []byte, f *pb.CheckFailed, lat *pb.Latency, in *interner) bool {
	var seen uint32
	for len(p) > 0 {
		if p[0] >= 0x80 {
			return false
		}
		num, typ := protowire.Number(p[0]>>3), protowire.Type(p[0]&7)
		p = p[1:]
		if seen&(1<<num) != 0 {
			return false
		}
		seen |= 1 << num
		var n int
		switch {
		case (num == fieldFailedClass || num == fieldFailedStatus) && typ == protowire.VarintType:
			var v uint64
			if v, n = protowire.ConsumeVarint(p); n < 0 {
				return false
			}
			if num == fieldFailedClass {
				f.Class = pb.FailureClass(int32(v))
			} else {
				f.StatusCode = uint32(v)
			}
		case num == fieldFailedMessage && typ == protowire.BytesType:
			var v []byte
			var ok bool
			if v, n = protowire.ConsumeBytes(p); n < 0 {
				return false
			}
			if f.Message, ok = in.str(v); !ok {
				return false
			}
		case num == fieldFailedLatency && typ == protowire.BytesType:
			var v []byte
			if v, n = protowire.ConsumeBytes(p); n < 0 || !decodeLatency(v, lat) {
				return false
			}
			f.Latency = lat
		default:
			return false
		}
		p = p[n:]
	}
	return true
}

func decodeLatency(p []byte, lat *pb.Latency) bool {
	var seen uint32
	for len(p) > 0 {
		if p[0] >= 0x80 {
			return false
		}
		num, typ := protowire.Number(p[0]>>3), protowire.Type(p[0]&7)
		p = p[1:]
		if seen&(1<<num) != 0 || typ != protowire.VarintType || num < fieldConnect || num > fieldTotal {
			return false
		}
		seen |= 1 << num
		v, n := protowire.ConsumeVarint(p)
		if n < 0 {
			return false
		}
		switch num {
		case fieldConnect:
			lat.ConnectNs = int64(v)
		case fieldFirstByte:
			lat.FirstByteNs = int64(v)
		default:
			lat.TotalNs = int64(v)
		}
		p = p[n:]
	}
	return true
}

// interner hands out one string per distinct value among recent strings
// (proxy IDs, sources and failure messages repeat from record to record),
// so that decoding allocates each about once: a table of the strings last
// seen, in sets of internWays (a string's hash picks its set; a new string
// takes a free place in it, else replaces one of its strings in turn). With one slot a string (direct
// mapped), any two of the strings in use that hash to the same slot evict
// each other every time: a quarter of the 1,000 proxy IDs of a replay did,
// and were copied at every event. A nil interner copies every string. Only
// valid UTF-8 is ever stored: a hit needs no validation.
type interner struct {
	table  *[internSets]internSet
	victim uint32 // counts the misses in full sets: the way replaced
}

// internSet is a set of an interner's table: strings, each with a tag (the
// high bits of its hash, never 0) so that a lookup compares only the
// strings whose tags match.
type internSet struct {
	tags [internWays]uint32
	strs [internWays]string
}

// internSlots is the size of an interner's table (80 KiB with the tags),
// in internSets sets of internWays.
const (
	internSlots = 4096
	internWays  = 4
	internSets  = internSlots / internWays
)

// str returns b as a string (a copy: it never aliases b); ok is false if b
// is not valid UTF-8.
func (in *interner) str(b []byte) (string, bool) {
	if len(b) == 0 {
		return "", true
	}
	if in == nil {
		return string(b), utf8.Valid(b)
	}
	if in.table == nil {
		in.table = new([internSets]internSet)
	}
	h := internHash(b)
	set, tag := &in.table[h%internSets], uint32(h>>32)|1
	free := -1
	for i, t := range set.tags {
		if t == tag && set.strs[i] == string(b) {
			return set.strs[i], true
		}
		if t == 0 && free < 0 {
			free = i
		}
	}
	if !utf8.Valid(b) {
		return "", false
	}
	i := free
	if i < 0 { // the set is full: replace its strings in turn
		in.victim++
		i = int(in.victim % internWays)
	}
	set.tags[i], set.strs[i] = tag, string(b)
	return set.strs[i], true
}

// internHash is a cheap hash of b for the interner's table (a collision
// only costs a copy): proxy IDs are 16 hex digits, so their first and last
// 8 bytes mixed.
func internHash(b []byte) uint64 {
	var h uint64
	if len(b) >= 8 {
		h = binary.LittleEndian.Uint64(b) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(b[len(b)-8:]), 31)
	} else {
		for _, c := range b {
			h = h<<8 | uint64(c)
		}
	}
	h ^= uint64(len(b))
	h *= 0x9e3779b97f4a7c15
	return h ^ h>>29
}
