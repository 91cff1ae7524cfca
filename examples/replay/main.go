// Command replay reads a proxyhealth data directory (read-only, while no
// daemon runs on it) and explains why proxies failed: the story of the
// proxy given as argument (its ID or URL), or of every proxy that ever
// went unhealthy, gave up or was ejected from rotation by real traffic.
// It uses the root package alone.
//
//	go run ./examples/replay -data ./proxyhealth-data
//	go run ./examples/replay -data ./proxyhealth-data socks5://10.0.0.7:1080
//
// `proxyhealth journal explain PROXY` prints the same story for one proxy,
// also from a running daemon (--server).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/proxyhealth/proxyhealth"
)

func main() {
	data := flag.String("data", "./proxyhealth-data", "the daemon's data `DIR` (holding journal.db)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: replay [-data DIR] [PROXY]\n\nExplains the proxy PROXY (ID or URL), or every proxy that failed.")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 1 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *data, flag.Arg(0)); err != nil {
		fmt.Fprintln(os.Stderr, "replay:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dir, proxy string) error {
	a, err := proxyhealth.OpenArchive(ctx, dir, proxyhealth.ArchiveOptions{})
	if errors.Is(err, proxyhealth.ErrJournalLocked) {
		return fmt.Errorf("%w: a daemon runs on %s; ask it instead: proxyhealth journal explain PROXY --server URL", err, dir)
	}
	if err != nil {
		return err
	}
	defer a.Close()

	ids := []string{proxy}
	if proxy == "" {
		if ids, err = failedProxies(ctx, a); err != nil {
			return err
		}
		if len(ids) == 0 {
			fmt.Printf("no proxy failed in the %d events of %s\n", a.Head()-a.First()+1, a.Path())
			return nil
		}
	}
	for i, id := range ids {
		story, err := a.Explain(ctx, id)
		if err != nil {
			return err
		}
		if i > 0 {
			fmt.Println()
		}
		fmt.Print(story)
	}
	return nil
}

// failedProxies lists the proxies that went unhealthy or failed, or were
// ejected, in the order of their first such event.
func failedProxies(ctx context.Context, a *proxyhealth.Archive) ([]string, error) {
	var ids []string
	seen := map[string]bool{}
	f := proxyhealth.JournalFilter{Types: []string{"state_changed", "proxy_ejected"}}
	for env, err := range a.ReadJournal(ctx, f) {
		if err != nil {
			return nil, err
		}
		r := proxyhealth.RecordOf(env)
		if r.Type == "state_changed" && r.To != "unhealthy" && r.To != "failed" {
			continue
		}
		if !seen[r.ProxyID] {
			seen[r.ProxyID] = true
			ids = append(ids, r.ProxyID)
		}
	}
	return ids, nil
}
