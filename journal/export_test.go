package journal

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Test hooks into the record format (record.go).
var (
	FrameRecord = frameRecord
	// RecordPayload returns the payload of a framed record, or v itself
	// when it is unframed.
	RecordPayload = func(v []byte) []byte {
		if len(v) > 0 && v[0] == recordFramed {
			return v[recordHeader:]
		}
		return v
	}
)

// SetCreateHook sets the hook that runs between a new journal's
// initialisation under its temporary name and its link into place.
func SetCreateHook(f func(tmp string)) { createHook = f }

// EventRecord returns the stored record of event seq, alone under its seq
// or in a block (block.go); nil if there is none.
func EventRecord(tx *bolt.Tx, seq uint64) []byte {
	v, err := newEventCursor(tx.Bucket(bucketEvents)).get(seq)
	if err != nil {
		return nil
	}
	return v
}

// IsolateEvent stores event seq alone under its seq, as schema version 4
// stored every event: the block that holds it is split into the events
// before it, it and the events after it. Tests that damage, replace or
// delete one event's value use it first.
func IsolateEvent(tx *bolt.Tx, seq uint64) error {
	events := tx.Bucket(bucketEvents)
	c := events.Cursor()
	k, v := c.Seek(appendSeqKey(nil, seq))
	if k == nil || binary.BigEndian.Uint64(k) != seq {
		k, v = c.Prev()
	}
	if k == nil {
		return fmt.Errorf("no block holds event %d", seq)
	}
	blk, err := openBlock(k, v)
	if err != nil {
		return err
	}
	if blk.alone {
		return nil
	}
	var recs [][]byte
	for blk.n > 0 {
		_, rec, err := blk.next()
		if err != nil {
			return err
		}
		recs = append(recs, bytes.Clone(rec))
	}
	first := binary.BigEndian.Uint64(k)
	if seq < first || seq >= first+uint64(len(recs)) {
		return fmt.Errorf("no block holds event %d", seq)
	}
	if err := events.Delete(bytes.Clone(k)); err != nil {
		return err
	}
	i := int(seq - first)
	for _, part := range []struct {
		at   uint64
		recs [][]byte
	}{{first, recs[:i]}, {seq, recs[i : i+1]}, {seq + 1, recs[i+1:]}} {
		if len(part.recs) == 0 {
			continue
		}
		if err := events.Put(appendSeqKey(nil, part.at), appendBlock(nil, part.recs)); err != nil {
			return err
		}
	}
	return nil
}

// IsolateEvents stores every event alone under its seq (IsolateEvent).
func IsolateEvents(tx *bolt.Tx) error {
	events := tx.Bucket(bucketEvents)
	var keys, recs [][]byte
	err := events.ForEach(func(k, v []byte) error {
		blk, err := openBlock(k, v)
		if err != nil || blk.alone {
			return err
		}
		keys = append(keys, bytes.Clone(k))
		for blk.n > 0 {
			seq, rec, err := blk.next()
			if err != nil {
				return err
			}
			recs = append(recs, appendSeqKey(nil, seq), bytes.Clone(rec))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := events.Delete(k); err != nil {
			return err
		}
	}
	for i := 0; i < len(recs); i += 2 {
		if err := events.Put(recs[i], recs[i+1]); err != nil {
			return err
		}
	}
	return nil
}
