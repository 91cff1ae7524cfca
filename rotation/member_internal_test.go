package rotation

import (
	"fmt"
	"net/url"
	"reflect"
	"testing"
	"unsafe"
)

// TestPicksHandOutTheMemberSet: a slot keeps its Member in pieces (its
// own fields, the attrs it shares), and a pick puts them together again:
// the Member Set gives, its URL the same pointer, its tags nil or empty as
// they were, a port beyond 16 bits intact. Members with the same source,
// scheme, weight (and wide port) share one attrs, which the pool forgets
// once no member uses it; a new member whose tags equal the previous new
// member's shares their copy.
func TestPicksHandOutTheMemberSet(t *testing.T) {
	p, err := NewPool(Options{})
	if err != nil {
		t.Fatal(err)
	}
	u := func(i int) *url.URL {
		return &url.URL{Scheme: "socks5", User: url.UserPassword("u", "p"), Host: fmt.Sprintf("10.0.0.%d:1080", i)}
	}
	members := []Member{
		{ID: "a", URL: u(1), Scheme: "socks5", Host: "10.0.0.1", Port: 1080, Source: "s"},
		{ID: "b", URL: u(2), Scheme: "socks5", Host: "10.0.0.2", Port: 1080, Source: "s", Tags: []string{"x"}}, // a's attrs
		{ID: "c", URL: u(3), Scheme: "socks5", Host: "10.0.0.3", Port: 65535, Source: "s", Tags: []string{}},   // a's attrs
		{ID: "d", URL: u(4), Scheme: "http", Host: "h", Port: 70000, Source: "s", Tags: []string{"x", "y", "x"}, Weight: 2.5},
		{ID: "e", Scheme: "other", Host: "h", Port: -1, Source: "s\x00", Tags: []string{"x"}},
		{ID: "f", URL: u(6), Port: 70000, Source: "s", Tags: []string{"x", "y", "x"}, Weight: 2.5},
		{ID: "g", URL: u(7), Scheme: "http", Host: "h", Port: 70000, Source: "s", Tags: []string{"x", "y", "x"}, Weight: 2.5}, // d's attrs, f's tags
	}
	for _, m := range members {
		p.Set(m, Status{State: StateHealthy})
	}
	p.Publish()
	if len(p.attrs) != 4 {
		t.Errorf("%d attrs for 7 members, want 4 (a, b and c share theirs, d and g theirs)", len(p.attrs))
	}
	get := p.slots.Get
	if get("a").a != get("b").a || get("a").a != get("c").a || get("d").a != get("g").a || get("d").a == get("f").a {
		t.Error("members with the same source, scheme, weight and wide port do not share their attrs (or others do)")
	}
	if &get("f").tags[0] != &get("g").tags[0] || &get("d").tags[0] == &get("f").tags[0] {
		t.Error("g does not share the tags of f, the member Set before it with the same (or d shares them)")
	}
	for _, m := range members {
		dst := make([]Pick, len(members))
		n, err := p.PickN(Request{}, dst)
		if err != nil || n != len(members) {
			t.Fatalf("PickN: %d, %v", n, err)
		}
		found := false
		for _, pk := range dst[:n] {
			if pk.ID != m.ID {
				continue
			}
			found = true
			if !reflect.DeepEqual(pk.Member, m) || pk.URL != m.URL {
				t.Errorf("picked %+v, want the member set, %+v", pk.Member, m)
			}
		}
		if !found {
			t.Errorf("%s was not picked", m.ID)
		}
	}
	// A member whose own fields changed keeps its attrs, even when no
	// other member uses them; one whose attrs changed moves to others,
	// and the old ones stay while another member uses them.
	before := get("e").a
	moved := members[4]
	moved.Host, moved.URL = "10.0.0.55", u(55)
	p.Set(moved, Status{State: StateHealthy})
	if got := get("e"); got.host != moved.Host || got.a != before || len(p.attrs) != 4 {
		t.Errorf("after e's host changed: host %q, attrs kept %v, %d attrs (want 4)", got.host, got.a == before, len(p.attrs))
	}
	other := members[0]
	other.Source = "s2"
	p.Set(other, Status{State: StateHealthy})
	if len(p.attrs) != 5 || get("b").a.refs != 2 {
		t.Errorf("after a's source changed: %d attrs (want 5), b's used by %d (want 2)", len(p.attrs), get("b").a.refs)
	}
	for _, m := range members {
		p.Remove(m.ID)
	}
	if len(p.attrs) != 0 {
		t.Errorf("%d attrs left after every member was removed", len(p.attrs))
	}
	p.Publish()
	if _, err := p.Pick(Request{}); err != ErrNoProxy {
		t.Fatalf("Pick from an emptied pool: %v", err)
	}
}

// TestSlotSize keeps a slot in the 112-byte size class (a pool holds one
// per member, and the next class up is 128 bytes), with what scans read
// of every member on the bytes 32 to 63 (on one cache line in three slots
// out of four).
func TestSlotSize(t *testing.T) {
	var s slot
	if n := unsafe.Sizeof(s); n > 112 {
		t.Errorf("a slot takes %d bytes, want at most 112", n)
	}
	for name, f := range map[string][2]uintptr{
		"id": {unsafe.Offsetof(s.id), unsafe.Sizeof(s.id)},
		"a":  {unsafe.Offsetof(s.a), unsafe.Sizeof(s.a)},
		"cs": {unsafe.Offsetof(s.cs), unsafe.Sizeof(s.cs)},
	} {
		if f[0] < 32 || f[0]+f[1] > 64 {
			t.Errorf("slot.%s takes bytes %d to %d, want them within 32 to 63", name, f[0], f[0]+f[1]-1)
		}
	}
}
