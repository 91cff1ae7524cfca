package journaltest

import (
	"math/rand/v2"
)

// DamageKinds names the kinds of damage Damage applies, indexed by
// seed % len(DamageKinds).
var DamageKinds = []string{
	"bit flips", "byte run", "truncation", "extension", "page copied over another",
	"zeroed page", "truncate at 8192", "truncate at 65536",
}

// Damage returns a damaged copy of a journal file's bytes; the damage is
// chosen by seed, deterministically (see DamageKinds): a few random bit
// flips, a run of random, zero or 0xff bytes, a truncation, an extension
// with random or zero bytes, one 4 KiB page copied over another, a zeroed
// page, or a truncation at 8192 or 65536 bytes. data is not modified.
func Damage(data []byte, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 0x6a6f75726e616c))
	d := append([]byte(nil), data...)
	if len(d) == 0 {
		return d
	}
	const page = 4096
	pages := max(len(d)/page, 1)
	switch seed % uint64(len(DamageKinds)) {
	case 0:
		for range 1 + r.IntN(8) {
			i := r.IntN(len(d))
			d[i] ^= 1 << r.IntN(8)
		}
	case 1:
		n := 1 + r.IntN(512)
		i := r.IntN(len(d))
		fill := r.IntN(3)
		for k := i; k < min(i+n, len(d)); k++ {
			switch fill {
			case 0:
				d[k] = byte(r.Uint32())
			case 1:
				d[k] = 0
			default:
				d[k] = 0xff
			}
		}
	case 2:
		if r.IntN(2) == 0 {
			d = d[:r.IntN(pages)*page]
		} else {
			d = d[:r.IntN(len(d))]
		}
	case 3:
		ext := make([]byte, 1+r.IntN(3*page))
		if r.IntN(2) == 0 {
			for i := range ext {
				ext[i] = byte(r.Uint32())
			}
		}
		d = append(d, ext...)
	case 4:
		from, to := r.IntN(pages), r.IntN(pages)
		if (to+1)*page <= len(d) && (from+1)*page <= len(d) {
			copy(d[to*page:(to+1)*page], data[from*page:(from+1)*page])
		}
	case 5:
		p := r.IntN(pages)
		clear(d[p*page : min((p+1)*page, len(d))])
	case 6:
		d = d[:min(len(d), 8192)]
	case 7:
		d = d[:min(len(d), 65536)]
	}
	return d
}
