// Command embed shows proxyhealth embedded in a Go program: it monitors the
// proxies given as arguments and prints every state change, as committed to
// the journal, until interrupted. It uses the root package alone and builds
// without cgo (CGO_ENABLED=0).
//
//	go run ./examples/embed http://127.0.0.1:3128 socks5://user:pass@127.0.0.1:1080
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/proxyhealth/proxyhealth"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: embed PROXY_URL...")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	health := proxyhealth.DefaultHealthConfig()
	health.Interval = 10 * time.Second
	eng, err := proxyhealth.Open(ctx, proxyhealth.Config{
		Sources: []proxyhealth.SourceConfig{{
			Name:    "example",
			Health:  health,
			Probe:   proxyhealth.ProbeConfig{TargetURL: "http://www.gstatic.com/generate_204", Timeout: 3 * time.Second},
			Proxies: os.Args[1:],
		}},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sub := eng.Subscribe()
	for {
		select {
		case env, ok := <-sub.C:
			if !ok {
				fmt.Fprintln(os.Stderr, "subscription ended:", sub.Err())
				return
			}
			if r := proxyhealth.RecordOf(env); r.Type == "state_changed" {
				fmt.Printf("%s %s %s → %s (%s)\n", r.At, r.ProxyID, r.From, r.To, r.Reason)
			}
		case <-ctx.Done():
			closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := eng.Close(closeCtx); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			return
		}
	}
}
