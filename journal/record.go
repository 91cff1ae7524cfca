package journal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"google.golang.org/protobuf/proto"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// Record format (schema version 3). Every event and snapshot value written
// since schema version 3 is framed:
//
//	0x00 | CRC-32C (Castagnoli) of the payload, big-endian uint32 | payload
//
// where the payload is the marshalled Envelope (or ProxySnapshot). No
// protobuf message starts with 0x00 (field number 0 is invalid), so a
// framed record is told apart from an unframed one of schema version 2 or
// older by its first byte. The meta key "crc_from" holds the first seq
// written with a checksum (1 for a journal created at version 3; the head
// + 1 at the upgrade from version 2): an event with a lower seq may be
// unframed, one with this seq or higher must be framed, so damage to the
// first byte cannot pass an event off as an old one. Snapshots may be
// unframed until a proxy's next snapshot replaces them.
const (
	recordFramed = 0x00
	recordHeader = 5
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// metaCRCFrom is the meta key of the first seq written with a checksum.
var metaCRCFrom = []byte("crc_from")

// noCRC is the crc_from of a journal without checksums (schema 2, read
// only).
const noCRC = ^uint64(0)

// beginRecord appends a record header to dst; finishRecord fills in the
// checksum once the payload follows it.
func beginRecord(dst []byte) []byte { return append(dst, recordFramed, 0, 0, 0, 0) }

// finishRecord sets the checksum of rec, a header followed by the payload.
func finishRecord(rec []byte) {
	binary.BigEndian.PutUint32(rec[1:], crc32.Checksum(rec[recordHeader:], castagnoli))
}

// frameRecord returns payload framed with its checksum.
func frameRecord(payload []byte) []byte {
	rec := append(beginRecord(make([]byte, 0, recordHeader+len(payload))), payload...)
	finishRecord(rec)
	return rec
}

// eventPayload verifies the record of event seq and returns its payload;
// crcFrom is the journal's first checksummed seq.
func eventPayload(v []byte, seq, crcFrom uint64) ([]byte, error) {
	if len(v) > 0 && v[0] == recordFramed {
		return checkRecord(v, "event", seq)
	}
	if seq >= crcFrom {
		return nil, fmt.Errorf("event %d has no checksum, but every event from seq %d on is written with one (the record is damaged)", seq, crcFrom)
	}
	return v, nil
}

// snapshotPayload verifies a snapshot record and returns its payload.
func snapshotPayload(v []byte, proxyID []byte) ([]byte, error) {
	if len(v) > 0 && v[0] == recordFramed {
		p, err := checkRecord(v, "snapshot", 0)
		if err != nil {
			return nil, fmt.Errorf("snapshot of proxy %q: %v", proxyID, err)
		}
		return p, nil
	}
	return v, nil
}

func checkRecord(v []byte, what string, seq uint64) ([]byte, error) {
	name := func() string {
		if seq == 0 {
			return what
		}
		return fmt.Sprintf("%s %d", what, seq)
	}
	if len(v) < recordHeader {
		return nil, fmt.Errorf("%s: record of %d bytes is shorter than its header", name(), len(v))
	}
	p := v[recordHeader:]
	if want, got := binary.BigEndian.Uint32(v[1:]), crc32.Checksum(p, castagnoli); want != got {
		return nil, fmt.Errorf("%s fails its checksum (stored %08x, computed %08x): the record is damaged", name(), want, got)
	}
	return p, nil
}

// eventHeader verifies the record of event seq and decodes its header.
func eventHeader(v []byte, seq, crcFrom uint64) (header, error) {
	p, err := eventPayload(v, seq, crcFrom)
	if err != nil {
		return header{}, err
	}
	return decodeHeader(p)
}

// unmarshalSnapshot verifies and decodes a snapshot record stored under
// proxyID.
func unmarshalSnapshot(v, proxyID []byte, s *pb.ProxySnapshot) error {
	p, err := snapshotPayload(v, proxyID)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(p, s); err != nil {
		return fmt.Errorf("snapshot of proxy %q cannot be decoded: %v", proxyID, err)
	}
	if len(v) > 0 && v[0] != recordFramed && len(s.ProtoReflect().GetUnknown()) > 0 {
		// A framed record whose framing byte was damaged: its header
		// decodes as an unknown field.
		return fmt.Errorf("snapshot of proxy %q has no checksum and fields this version does not know: the record is damaged", proxyID)
	}
	return nil
}
