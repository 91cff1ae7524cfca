package membership

import "sort"

// FNV-1a 64 parameters.
const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// score is the rendezvous weight of key on member: FNV-1a 64 over
// member + "\x00" + key, then the splitmix64 finalizer. It depends on
// nothing but the two strings, so every process, platform and Go version
// computes the same placement.
func score(member, key string) uint64 {
	h := uint64(fnvOffset64)
	for i := 0; i < len(member); i++ {
		h ^= uint64(member[i])
		h *= fnvPrime64
	}
	h *= fnvPrime64 // the "\x00" separator: h ^= 0, then multiply
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= fnvPrime64
	}
	// splitmix64 finalizer
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// Owner is the member that owns key among members (advertised
// "host:port"s, in any order): the one with the highest score, ties going
// to the smaller name; "" for no members. It allocates nothing.
// Rendezvous hashing: when a member joins it takes about 1/n of the keys,
// all from the others; when one leaves, only its keys move.
func Owner(key string, members []string) string {
	var best string
	var bestScore uint64
	for i, m := range members {
		s := score(m, key)
		if i == 0 || s > bestScore || (s == bestScore && m < best) {
			best, bestScore = m, s
		}
	}
	return best
}

// Ranked returns all members, best first for key (Ranked(key, ms)[0] ==
// Owner(key, ms)): the second is who owns key when the first is gone, and
// so on. It returns a new slice; members is not modified.
func Ranked(key string, members []string) []string {
	type scored struct {
		m string
		s uint64
	}
	all := make([]scored, len(members))
	for i, m := range members {
		all[i] = scored{m, score(m, key)}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].s != all[j].s {
			return all[i].s > all[j].s
		}
		return all[i].m < all[j].m
	})
	out := make([]string, len(all))
	for i, s := range all {
		out[i] = s.m
	}
	return out
}
