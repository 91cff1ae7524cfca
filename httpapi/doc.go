// Package httpapi serves proxyhealth's HTTP API, Prometheus metrics, the
// live event stream and the dashboard.
//
// New builds the handler from an engine (anything with the Engine methods,
// e.g. *proxyhealth.Engine) and a live status (Options.Status, e.g.
// *projections.Live):
//
//	srv := httpapi.New(eng, httpapi.Options{Status: live, Token: token})
//	defer srv.Close()
//	http.ListenAndServe("127.0.0.1:9480", srv)
//
// # Endpoints
//
//	GET    /                     the dashboard (one embedded page, no external assets)
//	GET    /v1/pool              pool summary: counts by state, per source, journal seq
//	GET    /v1/proxies           ?state=&source=&limit=&offset= (limit default 100, max 10000)
//	GET    /v1/proxies/{id}      one proxy (id, or its URL, path-escaped) with history and state changes
//	POST   /v1/proxies           {"url": "...", "source": "..."} adds a proxy (201)
//	DELETE /v1/proxies/{id}      removes a proxy
//	POST   /v1/proxies/{id}/revive
//	POST   /v1/pause, /v1/resume ?source= (all sources when absent)
//	GET    /v1/events            Server-Sent Events of committed journal events
//	GET    /metrics              Prometheus metrics (names prefixed proxyhealth_)
//	GET    /healthz              liveness, never authenticated
//
// Every error is JSON {"error": "..."} with a fitting status code; request
// bodies are limited to Options.MaxBodyBytes (64 KiB by default). With
// Options.Token set, every endpoint except /healthz and the dashboard page
// itself requires "Authorization: Bearer TOKEN" (compared in constant time);
// the dashboard reads the token from its URL fragment (#token=...), which
// browsers never send to the server.
//
// # Event stream
//
// GET /v1/events sends each committed journal event as one SSE message
// whose id is the event's global seq and whose data is the same JSON object
// as `proxyhealth journal replay --format json` (events.RecordOf). A client
// that reconnects with "Last-Event-ID: N" (or ?last_event_id=N) first gets
// every retained event after N from the journal and then the live ones,
// without gaps or duplicates. ?type=state_changed,pool_degraded,... and
// ?source= filter the stream (ids stay the journal seqs, so resuming works
// the same). A comment line is sent every Options.Heartbeat (15 s) so that
// proxies and clients can tell an idle stream from a dead one.
package httpapi
