package projections_test

import (
	"runtime"
	"testing"

	"github.com/proxyhealth/proxyhealth/internal/gen"
	"github.com/proxyhealth/proxyhealth/internal/testutil"
	"github.com/proxyhealth/proxyhealth/projections"
	pb "github.com/proxyhealth/proxyhealth/proto/proxyhealth/v1"
	"google.golang.org/protobuf/proto"
)

// BenchmarkLiveBytesPerProxy reports the Go heap the live status keeps per
// proxy after folding 100,000 realistic events of 10,000 proxies (the
// events stay alive outside the measurement, so strings shared with them
// are not counted).
func BenchmarkLiveBytesPerProxy(b *testing.B) {
	const proxies = 10_000
	envs := committed(b, 1, proxies, 10*proxies)
	var perProxy float64
	for range b.N {
		before := testutil.HeapInUse()
		l := projections.NewLive(projections.LiveOptions{})
		l.Apply(envs...)
		perProxy = float64(testutil.HeapInUse()-before) / proxies
		if got := l.Summary().Total; got == 0 {
			b.Fatal("no proxies")
		}
		runtime.KeepAlive(l)
	}
	b.ReportMetric(perProxy, "B/proxy")
}

// BenchmarkLiveTrackedBytesPerProxy is BenchmarkLiveBytesPerProxy with
// every proxy tracked (Track), as the engine's actors do: the live status
// and the trackers. The IDs given to Track, like the events, are made
// outside the measurement: the actors hold them anyway.
func BenchmarkLiveTrackedBytesPerProxy(b *testing.B) {
	const proxies = 10_000
	envs := committed(b, 1, proxies, 10*proxies)
	ids := make([]string, proxies)
	for i := range ids {
		ids[i] = gen.ID(i)
	}
	trackers := make([]*projections.Tracker, proxies)
	var perProxy float64
	for range b.N {
		before := testutil.HeapInUse()
		l := projections.NewLive(projections.LiveOptions{})
		l.Apply(envs...)
		for i, id := range ids {
			trackers[i] = l.Track(id)
		}
		perProxy = float64(testutil.HeapInUse()-before) / proxies
		if got := l.Summary().Total; got == 0 {
			b.Fatal("no proxies")
		}
		for _, t := range trackers {
			t.Release()
		}
		clear(trackers) // they hold l
		runtime.KeepAlive(l)
	}
	b.ReportMetric(perProxy, "B/proxy")
}

// BenchmarkLiveReplayedBytesPerProxy is BenchmarkLiveBytesPerProxy with
// each event decoded just before it is applied and dropped after, as a
// restart's replay of the journal does: it counts, besides, the strings
// the live status keeps of the events, which no one else then holds.
func BenchmarkLiveReplayedBytesPerProxy(b *testing.B) {
	const proxies = 10_000
	var encoded [][]byte
	for _, env := range committed(b, 1, proxies, 10*proxies) {
		p, err := proto.Marshal(env)
		if err != nil {
			b.Fatal(err)
		}
		encoded = append(encoded, p)
	}
	var perProxy float64
	for range b.N {
		before := testutil.HeapInUse()
		l := projections.NewLive(projections.LiveOptions{})
		for _, p := range encoded {
			env := new(pb.Envelope)
			if err := proto.Unmarshal(p, env); err != nil {
				b.Fatal(err)
			}
			l.Apply(env)
		}
		perProxy = float64(testutil.HeapInUse()-before) / proxies
		if got := l.Summary().Total; got == 0 {
			b.Fatal("no proxies")
		}
		runtime.KeepAlive(l)
	}
	b.ReportMetric(perProxy, "B/proxy")
}
