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
// An engine that also has Health() proxyhealth.Health (*proxyhealth.Engine
// does) has its condition served by /healthz, GET /v1/pool, /metrics and
// the dashboard; without it (test fakes) /healthz always answers ok.
//
// # Endpoints
//
//	GET    /                     the dashboard (one embedded page, no external assets)
//	GET    /v1/pool              pool summary: counts by state, per source, journal seq,
//	                             the journal's write condition and each projection's
//	GET    /v1/proxies           ?state=&source=&limit=&offset= (limit default 100, max 10000)
//	GET    /v1/proxies/{id}      one proxy (id, or its URL, path-escaped) with history and state changes
//	POST   /v1/proxies           {"url": "...", "source": "..."} adds a proxy (201)
//	DELETE /v1/proxies/{id}      removes a proxy
//	POST   /v1/proxies/{id}/revive
//	POST   /v1/pause, /v1/resume ?source= (all sources when absent)
//	GET    /v1/events            Server-Sent Events of committed journal events
//	GET    /metrics              Prometheus metrics (names prefixed proxyhealth_)
//	GET    /healthz              the engine's condition, never authenticated
//
// Every proxy in /v1/proxies and /v1/proxies/{id} has "paused": true while
// it is paused (not checked, keeping its last state until resumed).
//
// Every error is JSON {"error": "..."} with a fitting status code; request
// bodies are limited to Options.MaxBodyBytes (64 KiB by default). With
// Options.Token set, every endpoint except /healthz and the dashboard page
// itself requires "Authorization: Bearer TOKEN" (compared in constant time);
// the dashboard reads the token from its URL fragment (#token=...), which
// browsers never send to the server.
//
// # Status codes
//
//	200, 201  done (201: a proxy was added)
//	400       invalid request (query parameter, JSON body, proxy URL, config)
//	401       missing or wrong bearer token
//	403       cross-origin command from a web page (see Browsers below)
//	404       no such endpoint, proxy or source
//	405       wrong method (the Allow header lists the right ones)
//	409       conflict: the proxy is already monitored, removed, or not revivable
//	413       request body larger than Options.MaxBodyBytes
//	415       command without "Content-Type: application/json"
//	421       the Host header is not a name of this server (see Browsers below)
//	500       unexpected engine error (logged to Options.Logger)
//	503       the engine is closing; or the journal cannot write: nothing of the
//	          command was applied (for pause and resume: to the proxies the error
//	          names; the others took it), retry after the Retry-After seconds
//	          (GET /healthz tells when the journal takes writes again); or
//	          /healthz: not healthy
//	504       the outcome is unknown: the request ended (client gone, deadline)
//	          before the journal said whether the command was written; GET the
//	          proxy (or /v1/proxies?source= for pause/resume) to find out before
//	          retrying
//
// # Engine health
//
// GET /healthz answers 200 {"status": "ok", "version", "journal",
// "projections"} when the journal takes writes and every projection runs,
// and 503 {"status": "failing", "version", "causes": ["one line each"],
// "journal", "projections"} otherwise, so that a load balancer or
// orchestrator notices a monitor that can no longer record what it sees.
// "journal" is {"status": "ok"|"failing", "error", "since",
// "failed_commits", "last_commit_at", "head"}; "projections" is a list of
// {"name", "state": "running"|"failing"|"rebuilding"|"stopped", "error",
// "since", "seq", "lag"}. GET /v1/pool carries the same two objects. With
// Options.Token set, a /healthz request without the token gets the
// states, counts and times but "reason withheld" instead of the error
// texts, which may name files and hosts (as Kubernetes' verbose health
// checks do); with the token it gets them.
//
// # Browsers: Host and cross-origin checks
//
// The API usually listens on loopback without a token, and the operator
// runs a browser on the same machine. Any page that browser opens can send
// requests to 127.0.0.1: a form or a fetch in no-cors mode posts without
// asking (a "simple request": no preflight, Content-Type text/plain, a
// form type or none), and a page whose name the attacker re-points to
// 127.0.0.1 (DNS rebinding) can even read the answers, because the browser
// takes it for the same origin. The server therefore checks, before
// anything else and whether or not a token is set:
//
//   - Host. Every request, on every endpoint (/healthz, /metrics, the
//     dashboard and /v1/events included), must name the server in its Host
//     header: localhost, an address in 127.0.0.0/8, [::1], the address the
//     request came in on (the listener's local address, from
//     http.LocalAddrContextKey, so http://192.0.2.10:9480/ works on a server
//     listening on 0.0.0.0:9480 without configuration), or a name in
//     Options.AllowedHosts ("name" with any port, ".domain" for the domain
//     and its subdomains, "*" for any). Ports are not compared. Anything
//     else answers 421 Misdirected Request with a message naming the option.
//     A rebinding page's requests carry its own name, so they fail here.
//     Reached by another name (a DNS name, a Prometheus scrape target
//     "proxyhealth:9480", a reverse proxy that keeps the Host), add that
//     name to AllowedHosts. A request without Host (HTTP/1.0; never a
//     browser) passes.
//   - Origin. A state-changing request (any method but GET, HEAD, OPTIONS)
//     that carries an Origin header must come from the server's own origin
//     (the Origin's host[:port] equal to the Host header; "null" never is)
//     and, when it carries Sec-Fetch-Site, that must be "same-origin" or
//     "none"; otherwise 403. Another port on localhost is another origin.
//     This is the check of Go's http.CrossOriginProtection, made stricter
//     (an Origin that disagrees with Host is refused even when
//     Sec-Fetch-Site says same-origin).
//   - Content-Type. A state-changing request must be sent as
//     "Content-Type: application/json" (415 otherwise), which a page of
//     another origin cannot send without a CORS preflight that this server
//     never approves (it sends no Access-Control-* headers). A command
//     without a body (pause, resume, revive, delete) may omit the
//     Content-Type when it carries neither Origin nor Sec-Fetch-Site: every
//     browser sends Origin with a cross-origin POST or DELETE, so such a
//     request does not come from a web page, and curl -X POST keeps working.
//
// Reads (GET) are not checked for Origin: they change nothing, and without
// CORS headers no other origin can read their answers. The token does not
// lift these checks, because a browser that knows the token (the
// dashboard's session) is exactly what a hostile page would ride on; the
// checks cost a non-browser client nothing. This is what comparable
// servers do: etcd added --host-whitelist against DNS rebinding, Jupyter
// checks Host for local servers (local_hostnames) besides its token,
// Grafana refuses requests whose Origin differs from Host
// (csrf_trusted_origins to extend it), Vite's dev server has allowedHosts,
// and Go 1.25 added http.CrossOriginProtection; Docker's and Consul's
// APIs rely on a unix socket, TLS client certificates or ACL tokens
// instead, and Prometheus keeps its admin API behind a flag. To serve the
// dashboard through a reverse proxy, keep the Host header (nginx:
// proxy_set_header Host $host) and add the public name to AllowedHosts.
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
//
// # Metrics
//
// Besides the counters of the committed event stream and the pool gauges,
// /metrics reports the engine's health at scrape time:
//
//	proxyhealth_journal_failing                           1 while journal commits fail, else 0
//	proxyhealth_journal_commit_failures_total             failed commits since the engine started
//	proxyhealth_projection_up{projection="..."}           1 while the projection runs, else 0
//	proxyhealth_projection_lag_events{projection="..."}   journal head minus the projection's seq
//	proxyhealth_projection_seq                            seq applied by the live status the API serves
//
// proxyhealth_projection_lag_events used to be one unlabelled series for
// the live status; it now has one series per projection (as the engine
// reports it, so a stopped SQLite view shows its growing lag). Queries of
// the old series become max(proxyhealth_projection_lag_events). With an
// engine that does not report its health, only
// {projection="live status"} is reported, computed from Options.Status.
package httpapi
