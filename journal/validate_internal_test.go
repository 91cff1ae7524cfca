package journal

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
)

// assignStreamsOneByOne is assignStreams as a plain per-envelope map
// walk: the reference that its run-of-one-proxy shortcut must match.
func assignStreamsOneByOne(envs []*pb.Envelope, first uint64, head func(string) streamHead, local map[string]streamHead) ([]streamPos, error) {
	var out []streamPos
	for i, e := range envs {
		p := e.GetProxyId()
		if p == "" {
			out = append(out, streamPos{})
			continue
		}
		h, ok := local[p]
		if !ok {
			h = head(p)
		}
		want := h.seq + 1
		if s := e.GetStreamSeq(); s != 0 && s != want {
			return out, ErrStreamConflict
		}
		local[p] = streamHead{seq: want, last: first + uint64(i)}
		out = append(out, streamPos{streamSeq: want, prevSeq: h.last})
	}
	return out, nil
}

// TestAssignStreamsMatchesOneByOne: for calls mixing runs of one proxy,
// interleaved proxies, pool events, and right, wrong or absent explicit
// stream seqs, assignStreams gives the positions, the new heads and the
// conflicts of the one-by-one reference.
func TestAssignStreamsMatchesOneByOne(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 1))
	heads := map[string]streamHead{"a": {seq: 7, last: 70}, "b": {seq: 1, last: 3}}
	head := func(p string) streamHead { return heads[p] }
	proxies := []string{"a", "b", "c", ""}
	conflicts := 0
	for call := range 5000 {
		envs := make([]*pb.Envelope, 1+rng.IntN(12))
		p := proxies[rng.IntN(len(proxies))]
		for i := range envs {
			if rng.IntN(3) == 0 { // else the run of p goes on
				p = proxies[rng.IntN(len(proxies))]
			}
			envs[i] = &pb.Envelope{ProxyId: p}
		}
		// Explicit stream seqs: right ones from the reference, and
		// now and then a wrong one.
		if rng.IntN(2) == 0 {
			want, _ := assignStreamsOneByOne(envs, 100, head, map[string]streamHead{})
			for i, e := range envs {
				if e.ProxyId != "" && rng.IntN(2) == 0 {
					e.StreamSeq = want[i].streamSeq
					if rng.IntN(8) == 0 {
						e.StreamSeq += uint64(1 + rng.IntN(2))
					}
				}
			}
		}
		wantLocal, gotLocal := map[string]streamHead{}, map[string]streamHead{}
		want, wantErr := assignStreamsOneByOne(envs, 100, head, wantLocal)
		got, gotErr := assignStreams(envs, 100, head, gotLocal, nil)
		desc := func() string {
			s := ""
			for _, e := range envs {
				s += fmt.Sprintf(" %q/%d", e.ProxyId, e.StreamSeq)
			}
			return s
		}
		if (wantErr != nil) != (gotErr != nil) || gotErr != nil && !errors.Is(gotErr, ErrStreamConflict) {
			t.Fatalf("call %d%s: error %v, want %v", call, desc(), gotErr, wantErr)
		}
		if wantErr != nil {
			conflicts++
			continue
		}
		if !slices.Equal(got, want) {
			t.Fatalf("call %d%s: positions %v, want %v", call, desc(), got, want)
		}
		if fmt.Sprint(gotLocal) != fmt.Sprint(wantLocal) {
			t.Fatalf("call %d%s: new heads %v, want %v", call, desc(), gotLocal, wantLocal)
		}
	}
	if conflicts == 0 {
		t.Fatal("no call had a conflict: the test does not cover them")
	}
}
