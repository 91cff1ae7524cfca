package packed

import (
	"encoding/binary"
	"errors"
	"math"
	"time"

	"github.com/proxyhealth/proxyhealth/events"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// ErrBadEncoding is returned by Decode for bytes Encode did not make.
var ErrBadEncoding = errors.New("packed: not an encoded state")

// codecVersion is the first byte of an encoding.
const codecVersion = 1

// Encode appends to dst the encoding of s, a proxy's state without its ID,
// in about 100 bytes (varints; times as offsets from the last check); id
// is the ID the caller will give Decode. It reports false, appending
// nothing, when the encoding would not give s back exactly (Decode(…) ==
// s): a time that is not what events makes of unix nanoseconds, or
// another ID than s's. Keep such a state whole.
func Encode(dst []byte, s events.State, id string) ([]byte, bool) {
	if s.ProxyID != id {
		return dst, false
	}
	times := [numTimes]time.Time{s.AddedAt, s.LastCheckAt, s.LastChangeAt, s.EjectedUntil, s.LastEjectedAt, s.LastReturnAt, s.AdoptedAt}
	var ns [numTimes]int64
	for i, t := range times {
		ns[i] = unixNano(t)
		if fromUnixNano(ns[i]) != t {
			return dst, false
		}
	}
	var flags uint64
	for i, on := range []bool{s.HasCredentials, s.Added, s.Removed, s.Paused, s.HasLatencyEWMA} {
		if on {
			flags |= 1 << i
		}
	}
	b := append(dst, codecVersion)
	b = binary.AppendUvarint(b, flags)
	for _, v := range []int32{int32(s.Origin), int32(s.Health), int32(s.LastErrorClass), int32(s.Anonymity)} {
		b = binary.AppendVarint(b, int64(v))
	}
	for _, v := range []uint32{s.ConsecutiveSuccesses, s.ConsecutiveFailures, s.RecoveryAttempt, s.PassiveFailures, s.LastStatusCode, s.EjectionMultiplier} {
		b = binary.AppendUvarint(b, uint64(v))
	}
	for _, v := range []uint64{s.TotalChecks, s.TotalFailures, s.StreamSeq, s.Seq, math.Float64bits(s.Weight)} {
		b = binary.AppendUvarint(b, v)
	}
	for _, v := range []time.Duration{s.LatencyEWMA, s.LastLatency.Connect, s.LastLatency.FirstByte, s.LastLatency.Total} {
		b = binary.AppendVarint(b, int64(v))
	}
	// The last check as it is, the other times as offsets from it (0: the
	// zero time; else the zigzag offset + 1).
	base := ns[tLastCheck]
	b = binary.AppendVarint(b, base)
	for i, n := range ns {
		if i == tLastCheck {
			continue
		}
		if n == 0 {
			b = append(b, 0)
			continue
		}
		b = binary.AppendUvarint(b, zigzag(n-base)+1)
	}
	for _, v := range []string{s.Source, s.URLRedacted, s.LastError, s.Tags, s.ExitIP} {
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return b, true
}

// Decode returns the state Encode encoded into b, with ID id.
func Decode(b []byte, id string) (events.State, error) {
	d := decoder{b: b}
	if len(b) == 0 || b[0] != codecVersion {
		return events.State{}, ErrBadEncoding
	}
	d.b = b[1:]
	flags := d.uvarint()
	var enums [4]int32
	for i := range enums {
		v := d.varint()
		if v < math.MinInt32 || v > math.MaxInt32 {
			d.bad = true
		}
		enums[i] = int32(v)
	}
	var u32 [6]uint32
	for i := range u32 {
		v := d.uvarint()
		if v > math.MaxUint32 {
			d.bad = true
		}
		u32[i] = uint32(v)
	}
	var u64 [5]uint64
	for i := range u64 {
		u64[i] = d.uvarint()
	}
	var durs [4]time.Duration
	for i := range durs {
		durs[i] = time.Duration(d.varint())
	}
	var ns [numTimes]int64
	base := d.varint()
	for i := range ns {
		if i == tLastCheck {
			ns[i] = base
			continue
		}
		if v := d.uvarint(); v != 0 {
			ns[i] = base + unzigzag(v-1)
		}
	}
	var strs [5]string
	for i := range strs {
		strs[i] = d.str()
	}
	if d.bad || len(d.b) != 0 {
		return events.State{}, ErrBadEncoding
	}
	on := func(i int) bool { return flags&(1<<i) != 0 }
	return events.State{
		ProxyID: id, Source: strs[0], URLRedacted: strs[1], HasCredentials: on(0),
		Origin: pb.ProxyOrigin(enums[0]), Added: on(1), Removed: on(2), Paused: on(3),
		Health: pb.HealthState(enums[1]), ConsecutiveSuccesses: u32[0], ConsecutiveFailures: u32[1],
		RecoveryAttempt: u32[2], PassiveFailures: u32[3], TotalChecks: u64[0], TotalFailures: u64[1],
		AddedAt: fromUnixNano(ns[tAdded]), LastCheckAt: fromUnixNano(ns[tLastCheck]), LastChangeAt: fromUnixNano(ns[tLastChange]),
		LastErrorClass: pb.FailureClass(enums[2]), LastError: strs[2], LastStatusCode: u32[4],
		LastLatency: events.Latency{Connect: durs[1], FirstByte: durs[2], Total: durs[3]}, Tags: strs[3],
		Weight: math.Float64frombits(u64[4]), ExitIP: strs[4], Anonymity: pb.Anonymity(enums[3]),
		EjectedUntil: fromUnixNano(ns[tEjectedUntil]), EjectionMultiplier: u32[5],
		LastEjectedAt: fromUnixNano(ns[tLastEjected]), LastReturnAt: fromUnixNano(ns[tLastReturn]), AdoptedAt: fromUnixNano(ns[tAdopted]),
		LatencyEWMA: durs[0], HasLatencyEWMA: on(4), StreamSeq: u64[2], Seq: u64[3],
	}, nil
}

func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

// decoder reads an encoding; bad records a malformed one.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

// varint reads what binary.AppendVarint wrote: a zigzag uvarint.
func (d *decoder) varint() int64 { return unzigzag(d.uvarint()) }

func (d *decoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.bad, d.b = true, nil
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
