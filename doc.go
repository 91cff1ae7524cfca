// Package proxyhealth continuously health-checks pools of HTTP, HTTPS and
// SOCKS proxies.
//
// Every proxy is a supervised actor (protoactor-go) that schedules its own
// checks, with jitter, fast re-probes while suspect and backoff while down.
// Every observation and decision is a protobuf event appended to a durable
// journal (bbolt) before anything acts on it; the live status and the SQLite
// view are folds of that journal and can be rebuilt from it at any time.
//
// # Basics
//
//	eng, err := proxyhealth.Open(ctx, proxyhealth.Config{
//		DataDir: "./proxyhealth-data",
//		Sources: []proxyhealth.SourceConfig{{
//			Name:    "residential",
//			Proxies: []string{"socks5://user:pass@10.0.0.7:1080", "10.0.0.8:3128"},
//		}},
//	})
//	if err != nil { ... }
//	defer eng.Close(context.Background())
//	sub := eng.Subscribe()            // committed events, never blocking the engine
//	p, err := eng.Pick(proxyhealth.PickRequest{})  // a healthy proxy for real traffic
//	eng.ReportOutcome(proxyhealth.Outcome{ProxyID: p.ID, Class: "timeout"}) // what it saw
//
// The pure health state machine is in package events, the journal in
// package journal, the checkers in package probe and the actor shell in
// package actors. ARCHITECTURE.md describes how they fit.
//
// # Caveats
//
// Proxy credentials live only in memory: the journal, logs and every output
// carry URLs without them. A proxy added with credentials must therefore be
// configured again (config file or AddProxy) after a restart; its health
// history resumes from the journal.
package proxyhealth
