// Command transport shows an http.Client whose requests go through healthy
// proxies: proxyhealth checks the proxies given with -proxy, and every
// request of the client goes through one the engine picks; what the
// request saw goes back to the engine, so a proxy that fails real traffic
// is taken out of rotation at once. It uses the root package and package
// transport only, and builds without cgo.
//
//	go run ./examples/transport -proxy http://127.0.0.1:3128 -proxy socks5://user:pass@127.0.0.1:1080 https://example.com/
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/proxyhealth/proxyhealth"
)

type proxies []string

func (p *proxies) String() string     { return strings.Join(*p, ",") }
func (p *proxies) Set(s string) error { *p = append(*p, s); return nil }

func main() {
	var list proxies
	flag.Var(&list, "proxy", "proxy `URL` to check and route through (repeatable)")
	n := flag.Int("n", 5, "number of requests")
	strategy := flag.String("strategy", string(proxyhealth.LeastLatency), "pick strategy: round-robin, random, least-latency, weighted")
	flag.Parse()
	if len(list) == 0 || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: transport -proxy PROXY_URL [-proxy …] [-n N] URL")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, list, proxyhealth.Strategy(*strategy), *n, flag.Arg(0)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, list []string, strategy proxyhealth.Strategy, n int, target string) error {
	eng, err := proxyhealth.Open(ctx, proxyhealth.Config{
		Sources: []proxyhealth.SourceConfig{{
			Name:    "example",
			Probe:   proxyhealth.ProbeConfig{TargetURL: "http://www.gstatic.com/generate_204", Timeout: 5 * time.Second},
			Proxies: list,
		}},
	})
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = eng.Close(cctx)
	}()

	// The first checks run at once; wait until one proxy is healthy.
	for eng.Status().Summary().Healthy == 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if s := eng.Status().Summary(); s.Total > 0 && s.Unknown == 0 && s.Healthy == 0 {
			return errors.New("no proxy passed its first check")
		}
	}

	tr, err := proxyhealth.NewTransport(eng, proxyhealth.TransportOptions{Strategy: strategy})
	if err != nil {
		return err
	}
	defer tr.Close()
	client := &http.Client{Transport: tr, Timeout: time.Minute}
	for i := range n {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if err != nil {
			return err
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			fmt.Printf("request %d: %v\n", i+1, err)
			continue
		}
		size, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		fmt.Printf("request %d: %s, %d bytes in %v\n", i+1, resp.Status, size, time.Since(start).Round(time.Millisecond))
	}
	s := eng.Status().Summary()
	fmt.Printf("pool: %d healthy, %d ejected of %d\n", s.Healthy, s.Ejected, s.Total)
	return nil
}
