// Package membership is proxyhealth's cluster membership: a protoactor-go
// cluster whose member list lives in etcd, and the placement rule that
// tells every member which proxies it owns.
//
// A member joins with Join: it starts protoactor's remote and cluster
// (disthash as the required identity lookup; no grains are used) with a
// ClusterProvider of this package, which registers the member in etcd
// under a lease of its own (key <prefix><cluster>/<actor system id>, TTL 2
// s by default), keeps the lease alive every TTL/4, and follows the member
// list with Get, then Watch from the Get's revision + 1 (so a member that
// joins in between is never missed), reloading the list after a watch
// error or compaction. Every change is pushed to the cluster's topology
// and to Member.Watch's subscribers.
//
// Fencing: Member.Fresh is true only while the lease is confirmed alive:
// the send time of the last keep-alive etcd answered plus the TTL it
// reported is still ahead on the monotonic clock. A member paused (SIGSTOP)
// or cut off from etcd longer than the TTL reads false from its first
// instruction after, before any round trip, and must not check. When etcd
// says the lease is gone (a keep-alive finds no lease) or the member's key
// is deleted, the membership is lost for good: Member.Lost closes,
// Member.Err says why, and the owner must leave and rejoin as a new member
// (a new actor system; the daemon exits non-zero and is restarted). An
// etcd outage shorter than the TTL changes nothing, and a longer one that
// ends with a restarted etcd neither (etcd renews every lease when it
// elects a leader); the client's reconnect backoff is capped at 500 ms so
// that it reconnects in time.
//
// Placement: Owner and Ranked rank members for a key by rendezvous hashing
// (highest random weight) with a stable 64-bit hash, FNV-1a 64 over
// member + "\x00" + key then the splitmix64 finalizer, so every process
// computes the same owner from the same list of advertised "host:port"s.
//
// Remote messages whose type the receiver does not know (which protoactor's
// proto serializer would dereference as nil, killing the process) are
// dropped before protoactor sees them, with one warning per type name.
//
// This package and its users run their tests without -race: protoactor's
// remote and cluster race internally (notes/protoactor-go.md §8).
package membership
