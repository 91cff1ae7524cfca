package journal

import (
	"encoding/binary"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// bucketStreamsV1 is schema version 1's stream index (proxy_id 0x00
// big-endian stream_seq -> big-endian seq), dropped by migrateV1.
var bucketStreamsV1 = []byte("streams")

// migrateChunk is how many events migrateV1 rewrites per cursor pass.
const migrateChunk = 4096

// migrateV1 upgrades a schema version 1 journal to version 2 (then
// migrateV2 and migrateV3 take it to 4) in one
// transaction, so a crash leaves either the old or the new file: it sets
// every event's prev_seq, writes the stream heads checkpoint (from the
// events, and from the snapshots of proxies whose events retention
// deleted) and drops the stream index.
func (b *Bolt) migrateV1() error {
	err := b.update(func(tx *bolt.Tx) error {
		for _, name := range append([][]byte{bucketStreamsV1}, allBuckets...) {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("%w: %s (schema version 1) lacks the %q bucket; restore a backup", ErrCorrupt, b.path, name)
			}
		}
		events := tx.Bucket(bucketEvents)
		heads := make(map[string]streamHead)
		type rec struct{ k, v []byte }
		var batch []rec
		var next []byte // key to resume from; nil: the first
		var head uint64
		for {
			batch = batch[:0]
			c := events.Cursor()
			k, v := c.First()
			if next != nil {
				k, v = c.Seek(next)
			}
			for ; k != nil && len(batch) < migrateChunk; k, v = c.Next() {
				if len(k) != 8 {
					return fmt.Errorf("%w: %s: event key %x is not 8 bytes", ErrCorrupt, b.path, k)
				}
				seq := binary.BigEndian.Uint64(k)
				var e pb.Envelope
				if err := unmarshalEnvelope(v, &e, seq, noCRC); err != nil {
					return fmt.Errorf("%w: %s: %v", ErrCorrupt, b.path, err)
				}
				if id := e.GetProxyId(); id != "" {
					e.PrevSeq = heads[id].last
					heads[id] = streamHead{e.GetStreamSeq(), seq}
				}
				nv, err := proto.Marshal(&e)
				if err != nil {
					return fmt.Errorf("journal: upgrade %s: re-encode event %d: %w", b.path, seq, err)
				}
				batch = append(batch, rec{appendSeqKey(nil, seq), nv})
				head = seq
			}
			more := k != nil
			for _, r := range batch {
				if err := events.Put(r.k, r.v); err != nil {
					return err
				}
			}
			if !more {
				break
			}
			next = appendSeqKey(nil, head+1)
		}
		err := tx.Bucket(bucketSnapshots).ForEach(func(id, v []byte) error {
			var s pb.ProxySnapshot
			if err := proto.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("%w: %s: snapshot of proxy %q cannot be decoded: %v", ErrCorrupt, b.path, id, err)
			}
			if h := heads[string(id)]; s.GetStreamSeq() > h.seq {
				heads[string(id)] = streamHead{s.GetStreamSeq(), h.last}
			}
			return nil
		})
		if err != nil {
			return err
		}
		hb := tx.Bucket(bucketHeads)
		ids := make([]string, 0, len(heads))
		for id := range heads {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			if err := hb.Put([]byte(id), appendHead(nil, heads[id])); err != nil {
				return err
			}
		}
		if err := tx.DeleteBucket(bucketStreamsV1); err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(metaHeadsThrough, appendSeqKey(nil, head)); err != nil {
			return err
		}
		return meta.Put(metaSchema, binary.BigEndian.AppendUint64(nil, 2))
	})
	if err != nil {
		return fmt.Errorf("journal: upgrade %s from schema version 1 to 2 (nothing was changed): %w", b.path, err)
	}
	return nil
}

// migrateV2 upgrades a schema version 2 journal to version 3 (then
// migrateV3 takes it to 4) in one small
// transaction: the existing records stay as they are (without checksum),
// and every event from the head + 1 on is written with one (meta
// crc_from).
func (b *Bolt) migrateV2() error {
	err := b.update(func(tx *bolt.Tx) error {
		head, err := lastEvent(tx.Bucket(bucketEvents))
		if err != nil {
			return err
		}
		from := head + 1
		if first, err := readFirst(tx); err == nil {
			from = max(from, first)
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(metaCRCFrom, appendSeqKey(nil, from)); err != nil {
			return err
		}
		return meta.Put(metaSchema, binary.BigEndian.AppendUint64(nil, 3))
	})
	if err != nil {
		return fmt.Errorf("journal: upgrade %s from schema version 2 to 3 (nothing was changed): %w", b.path, err)
	}
	return nil
}

// migrateV3 upgrades a schema version 3 journal to version 4 (then
// migrateV4 takes it to 5), which only allows more (heads put by a
// checkpoint round may be newer than heads_through, see ckptRound), so it
// only writes the new version: from then on, an older proxyhealth refuses
// the file instead of taking a checkpoint round cut short for damage.
func (b *Bolt) migrateV3() error { return b.bumpSchema(3) }

// migrateV4 upgrades a schema version 4 journal to version 5, which only
// allows more (event blocks, see block.go: every value of version 4 is a
// valid lone record), so it only writes the new version: from then on, an
// older proxyhealth refuses the file instead of taking its blocks for
// damaged records.
func (b *Bolt) migrateV4() error { return b.bumpSchema(4) }

// bumpSchema moves a journal of schema version from to from+1 when the
// newer version only allows more than the older.
func (b *Bolt) bumpSchema(from uint64) error {
	err := b.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaSchema, binary.BigEndian.AppendUint64(nil, from+1))
	})
	if err != nil {
		return fmt.Errorf("journal: upgrade %s from schema version %d to %d (nothing was changed): %w", b.path, from, from+1, err)
	}
	return nil
}
