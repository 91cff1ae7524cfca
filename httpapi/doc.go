// Package httpapi serves proxyhealth's HTTP API, Prometheus metrics, the
// live event stream and the dashboard.
//
// New builds the handler from an engine (anything with the Engine methods
// and a Tail, e.g. *proxyhealth.Engine); the live status it serves is the
// engine's Status() unless Options.Status gives another:
//
//	srv, err := httpapi.New(eng, httpapi.Options{Token: token})
//	if err != nil {
//		return err // wraps ErrBadOptions
//	}
//	defer srv.Close()
//	http.ListenAndServe("127.0.0.1:9480", srv)
//
// An engine that also has Health() proxyhealth.Health (*proxyhealth.Engine
// does) has its condition served by /healthz, GET /v1/pool, /metrics and
// the dashboard; without it (test fakes) /healthz always answers ok. One
// that has Notifications() (*proxyhealth.Engine does) has them sent on
// /v1/events.
//
// # Endpoints
//
//	GET    /                     the dashboard (one embedded page, no external assets)
//	GET    /v1/pool              pool summary: counts by state, per source, journal seq,
//	                             the journal's write condition and each projection's;
//	                             ?scope=cluster|local on a cluster member (see Cluster)
//	GET    /v1/pool/history      the pool's counts over the last hour (see Pool history)
//	GET    /v1/proxies           ?state=&source=&tag=&anonymity=&limit=&offset= (limit default 100,
//	                             max 10000); each proxy has its tags, weight, exit_ip, anonymity;
//	                             ?scope= (see Cluster)
//	GET    /v1/proxies/{id}      one proxy (id, or its URL, path-escaped) with history and state changes
//	GET    /v1/proxies/{id}/story  ?limit= the proxy's history in plain sentences (see Story)
//	POST   /v1/proxies           {"url": "...", "source": "..."} adds a proxy (201); without
//	                             "source" to the source "default", created on first use
//	DELETE /v1/proxies/{id}      removes a proxy
//	POST   /v1/proxies/{id}/revive
//	POST   /v1/proxies/{id}/pause, /v1/proxies/{id}/resume
//	                             pauses or resumes one proxy (journaled as its proxy_paused,
//	                             proxy_resumed): {"status": "paused", "id": "..."}
//	POST   /v1/proxies/{id}/outcome  {"ok": false, "error_class": "timeout", "latency_ms": 812}
//	                             reports what real traffic saw through the proxy (202; see Rotation)
//	GET    /v1/pick              ?strategy=&source=&scheme=&tag=&anonymity=&key=&n=&credentials=&scope= hands
//	                             proxies out (see Rotation, Cluster)
//	GET    /v1/traffic           the rotating endpoint's counters, panic mode, ejections (see Rotation)
//	POST   /v1/pause, /v1/resume ?source= (all sources when absent): every proxy of the source
//	POST   /v1/reload            re-reads the configuration (see Reload)
//	POST   /v1/sources/{name}/confirm  applies the list a source holds because it shrank by more
//	                             than its shrink guard (409 when none is held)
//	POST   /v1/sources/{name}/refresh  reads a source's list now (a provider's URL or a file)
//	GET    /v1/events            Server-Sent Events of committed journal events and notifications
//	GET    /v1/journal           the journal as JSON lines, a page at a time (see Journal)
//	GET    /metrics              Prometheus metrics (names prefixed proxyhealth_)
//	GET    /healthz              the engine's condition, never authenticated
//
// Endpoints() lists them with the query parameters each accepts.
//
// A proxy's {id} in a path, and ?proxy= of /v1/events and /v1/journal, is
// its ID (16 hex digits) or its URL (path- or query-escaped; credentials in
// it are ignored), resolved like the engine does (proxyhealth.ResolveProxyID).
// An {id} that is neither names no proxy: 404 before the engine is asked
// (the answer quotes it, unless it has user info); such a ?proxy= is 400.
//
// GET /v1/pool's sources each have "last_refresh" and "last_error" (the
// last good read of the source's list, and the last failure to read it; the
// last good list stays in force meanwhile), and "held_list" while a list
// that shrank too much waits for confirmation.
//
// Every proxy in /v1/proxies and /v1/proxies/{id} has "paused": true while
// it is paused (not checked, keeping its last state until resumed), by
// itself or with its source.
//
// # Strict requests
//
// A query parameter an endpoint does not accept is refused with 400 naming
// it (and saying what the endpoint accepts), on every endpoint, before
// anything is done: POST /v1/pause?proxy=ID used to be taken as
// POST /v1/pause and paused the whole pool; now it answers 400 and points
// to POST /v1/proxies/{id}/pause. So is a parameter given twice and a
// malformed query string. A JSON body is exactly one object without
// unknown fields (400 naming the field, or "trailing data"); the commands
// that take no body (pause, resume, revive, delete, reload) accept none,
// white space or {}, and refuse a body with fields the same way.
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
//	202       an outcome was reported (passive health acts on it asynchronously)
//	400       invalid request: unknown, repeated or invalid query parameter, unknown
//	          JSON field or trailing data, proxy URL; POST /v1/reload: the new
//	          configuration is invalid (the error names file:line; the running
//	          configuration stays)
//	401       missing or wrong bearer token
//	403       cross-origin command from a web page (see Browsers below); GET /v1/pick
//	          ?credentials=true on a server without a token
//	404       no such endpoint, proxy or source
//	405       wrong method (the Allow header lists the right ones)
//	409       conflict: the proxy is already monitored, removed, or not revivable
//	413       request body larger than Options.MaxBodyBytes
//	415       command without "Content-Type: application/json"
//	421       the Host header is not a name of this server (see Browsers below)
//	500       unexpected engine error (logged to Options.Logger); POST /v1/reload:
//	          the configuration could not be read or applied
//	501       POST /v1/reload on a server without Options.Reload (the demo)
//	503       GET /v1/pick: no usable proxy matches; the engine is closing; or the journal cannot write: nothing of the
//	          command was applied (for pause and resume: to the proxies the error
//	          names; the others took it), retry after the Retry-After seconds
//	          (GET /healthz tells when the journal takes writes again); or
//	          /healthz: not healthy
//	504       the outcome is unknown: the request ended (client gone, deadline)
//	          before the journal said whether the command was written; GET the
//	          proxy (or /v1/proxies?source= for pause/resume) to find out before
//	          retrying
//
// GET /v1/journal answers 200 once its first line is ready; an error
// after that cuts the response off (no final chunk), see Journal.
//
// # Rotation
//
// GET /v1/pick hands out a usable proxy, chosen by ?strategy= (round-robin,
// random, least-latency, weighted, sticky; default: the engine's
// Config.Rotation.Strategy) among those matching ?source= and ?scheme=
// (http, https, socks4, socks4a, socks5, socks5h). sticky needs ?key=,
// the session key that keeps its proxy while it stays usable. The answer
// is one JSON object for n=1 (the default):
//
//	{"id": "…", "scheme": "http", "host": "10.0.0.7", "port": 3128, "state": "healthy", "source": "main", "panic": false}
//
// and for ?n=2…100 a JSON array of up to n distinct such objects, in the
// order the strategy prefers them (fewer when fewer match; an array even
// when it holds one). "panic" is true when too few of the matching
// proxies are usable and the least-bad one was handed out (panic mode).
// Nothing to hand out at all answers 503 {"error"}; an unknown strategy
// or scheme, sticky without key, n outside 1..100 answer 400.
//
// The answer carries no credentials. The proxy's full URL, user:password
// included, is added as "url" only when the server has a token
// (Options.Token, --token) and the request asks with ?credentials=true;
// on a server without a token ?credentials=true answers 403 (anyone who
// reaches such a server could read the passwords). The answers are never
// cached (Cache-Control: no-store) and never logged.
//
// POST /v1/proxies/{id}/outcome reports what real traffic saw through a
// proxy, for passive outlier detection (Engine.ReportOutcome): {"ok":
// true} when the proxy did its job (also when the target answered with an
// error through it), {"ok": false, "error_class": "…"} for a failure of
// the proxy's own, the class one of refused, timeout, reset, tls, dns,
// proxy_auth_required, bad_status, protocol, other
// (proxyhealth.OutcomeClasses; empty means other); "latency_ms" is
// optional. It answers 202 {"status": "reported", "id": "…"}; 400 for a
// missing "ok", a class with "ok": true, an unknown class (the answer
// lists the valid ones), an unknown field; 404 for an unknown proxy.
// PassiveFailureThreshold failures in a row (default 3) eject the proxy
// from rotation: "ejected": true and "ejected_until" in GET
// /v1/proxies/{id}, a proxy_ejected event in the journal.
//
// GET /v1/traffic answers
//
//	{"at": "…", "endpoint": {"ok", "failed", "no_proxy", "auth_failed", "bad_request", "retries",
//	 "active_conns", "conns", "bytes_up", "bytes_down"} | null,
//	 "panic_mode": false, "usable": 9, "candidates": 10, "ejected": 1, "ejection_limit": 5}
//
// "endpoint" holds the counters of the rotating forward-proxy endpoint
// since it started (Options.Traffic; the daemon passes its endpoint's
// Stats), null when the server has none. Rates are the difference of two
// answers over the difference of their "at"; the dashboard polls it every
// second. "panic_mode", "usable" and "candidates" are the picker's current
// view (it also covers start-up, before checks back a verdict, which the
// journaled pool_panic_entered/left and GET /v1/pool's "panic_mode" do
// not); "ejected" and "ejection_limit" are the proxies passive outlier
// detection holds out of rotation and may hold at once.
//
// # Story
//
// GET /v1/proxies/{id}/story tells the proxy's history from its journal
// stream in plain sentences (proxyhealth.Explain: runs of alike checks
// folded, recovery attempts, ejections): {"id", "url", "source", "state",
// "since", "now", "paused", "ejected", "removed", "events", "first_seq",
// "last_seq", "truncated", "lines_total", "lines": [{"at", "seq",
// "text"}, …]}, the newest ?limit= lines (default 200, at most 10000),
// oldest first. "seq" is the journal seq each sentence starts at. The
// dashboard's proxy page (click a proxy) shows it with the checks chart,
// the transitions and the ejections (GET /v1/journal?proxy=ID&type=
// proxy_ejected,proxy_returned).
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
// While the engine opens, a daemon serves Starting on the API's address:
// GET /healthz answers 503 {"status": "starting", "version"}, every other
// request 503 with an error body, both with Retry-After: 1 (the daemon
// answers from the moment it listens instead of leaving requests in the
// listen queue for as long as a start takes).
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
// as `proxyhealth journal replay --format json` (proxyhealth.RecordOf). A client
// that reconnects with "Last-Event-ID: N" (or ?last_event_id=N) first gets
// every retained event after N from the journal and then the live ones,
// without gaps or duplicates. ?type=state_changed,pool_degraded,... and
// ?source= filter the stream (ids stay the journal seqs, so resuming works
// the same). A comment line is sent every Options.Heartbeat (15 s) so that
// proxies and clients can tell an idle stream from a dead one.
//
// # Notifications on the event stream
//
// Besides the journal events, /v1/events sends the engine's
// once-per-episode notifications (proxyhealth.Notification) as SSE events
// named after their type, with the notification's JSON as data and no id:
//
//	event: proxy_down
//	data: {"type":"proxy_down","at":"…","seq":42,"proxy_id":"…","url":"http://10.0.0.7:3128","source":"main","from":"degraded","to":"unhealthy","reason":"…"}
//
// The types are proxy_down, proxy_recovered,
// pool_degraded and pool_recovered; EventSource clients receive them with
// addEventListener("proxy_down", …), while onmessage keeps receiving the
// journal events only. ?notify=proxy_down,pool_degraded selects some,
// ?notify=none turns them off (default: all four); ?source= and ?proxy=
// apply to them as to the journal events (pool notifications have no
// source, like pool events); ?type= applies to journal events only.
//
// "seq" is the journal seq of the event that caused the notification, and
// the notification is sent after that event's place in the stream (after
// the event itself when the filter passes it). Notifications carry no SSE
// id, so they never move a client's Last-Event-ID, and they are live
// only: a client that reconnects with Last-Event-ID gets the journal
// events it missed (state_changed, pool_degraded, pool_recovered, from
// which the episodes can be told) but not the notifications of that time;
// those that must not be missed belong in a webhook. A notification whose
// seq is at or before the client's Last-Event-ID is not sent again. A
// stream that falls behind drops its oldest notifications and says so in
// a comment line.
//
// # Journal
//
// GET /v1/journal reads the journal while the daemon runs (the bbolt file
// is locked by the daemon, so `proxyhealth journal replay --data` cannot).
// It answers "Content-Type: application/x-ndjson": JSON lines, one event a
// line, exactly what `proxyhealth journal replay --format json` prints
// (proxyhealth.Record), in seq order. Filters, all optional:
//
//	proxy=ID or URL     one proxy's events (credentials in a URL are ignored)
//	type=a,b            event types (proxyhealth.EventTypes)
//	source=NAME         one source's events
//	since=, until=      since <= at < until; RFC 3339, 2006-01-02T15:04:05 or
//	                    2006-01-02 (the server's time zone, like the CLI), or a
//	                    duration meaning that long ago (90m, 24h)
//	after=SEQ           only events with seq > SEQ: the paging cursor
//	limit=N             at most N lines (default 1000, 1 to 10000; 400 above)
//
// Paging: a page with exactly limit lines may have a next one; ask for it
// with after= the seq of the page's last line, until a page is shorter
// than limit (possibly empty). A full page also carries that seq in the
// HTTP trailer X-Next-After (the page is streamed, so it cannot be a
// header; Go's client has it in Response.Trailer once the body is read,
// curl -i prints it after the body); a short page has none. Events
// deleted by retention are skipped (the first line is then the first
// retained event after the cursor).
//
// The page is streamed as the journal is read and flushed every 256
// lines, so the server holds at most those whatever the limit, and a
// filter that matches few events reads the journal without holding
// anything. A read error before the first line answers with its status
// code (503 when the journal is closed); after it, the response is cut off
// without its final chunk, so a client sees a broken transfer, never a
// short page it could take for the end. Auth is that of the other read
// endpoints.
//
// # Reload
//
// POST /v1/reload calls Options.Reload (the daemon re-reads its config
// file and applies it with Engine.Reconcile, like SIGHUP) and answers 200
// {"added": [IDs], "removed": [IDs], "changed": [IDs]} (lists, never
// null; changed are kept proxies whose check settings changed). An error
// wrapping proxyhealth.ErrBadConfig answers 400 with its text, which names
// the file and line, and the running configuration stays as it was; other
// errors answer 500 (503/504 for journal failures, as for other commands).
// Without Options.Reload the endpoint answers 501.
//
// # Pool history
//
// GET /v1/pool/history answers {"interval_seconds": 10, "window_seconds":
// 3600, "samples": [{"at", "total", "healthy", "degraded", "unhealthy",
// "recovering", "failed", "unknown", "checking", "health_percentage",
// "paused", "journal_seq"}, …]}, oldest first: the pool summary sampled
// by the server every Options.PoolHistoryInterval (10 s) for the last
// Options.PoolHistoryWindow (1 h), in a ring of at most
// MaxPoolHistorySamples, from the server's start (not from the journal:
// a restarted daemon starts a new series). The dashboard draws it on open,
// then adds its own sample every second.
//
// # Cluster
//
// On a cluster member (an engine whose Cluster() reports true: proxyhealth
// run --cluster), GET /v1/pool, GET /v1/proxies and GET /v1/pick answer
// for the whole cluster: the engine asks every other member with a
// deadline (1 s, or the request's own if sooner) and merges the parts.
// ?scope=local answers for this member only; ?scope=cluster says the
// default explicitly. Any other value is 400 naming the two; outside a
// cluster scope=cluster is 400 ("not a cluster member") and scope=local is
// accepted and changes nothing. Every answer of the three says which
// scope it covers in the X-Proxyhealth-Scope header (cluster or local).
//
// A cluster-wide answer carries who answered, beside the unchanged fields:
//
//	"cluster_answer": {"members": ["10.0.0.1:7946", "10.0.0.2:7946"],
//	                   "missing": [{"member": "10.0.0.3:7946", "error": "…"}]}
//
// A member that did not answer in time is never dropped silently: it is in
// "missing" (the answer is still 200, without its proxies), and the header
// X-Proxyhealth-Missing-Members lists the missing members comma-separated
// (absent when every member answered). Members are advertised cluster
// addresses (--advertise), not API addresses. In GET /v1/pool the counts
// and sources are the cluster's; journal_seq, updated_at, journal,
// projections and the "cluster" object stay this member's own view. GET
// /v1/pool/history samples the cluster's counts too (a sample names its
// "missing_members"; a failed query leaves no sample). GET
// /v1/proxies pages through the proxies of every member sorted by ID, at
// most 20,000 deep (offset + limit; beyond, 400: filter, or ask each
// member with scope=local). GET /v1/pick with n=1 picks from this
// member's proxies if one is usable, else from another member's (its URL
// comes from the shared configuration; credentials=true works as usual);
// when nothing is usable, the 503 names the members that did not answer.
// ?n=2…100 picks from this member only (X-Proxyhealth-Scope: local), and
// n>1 with an explicit scope=cluster is 400. GET /v1/proxies/{id} and
// /story answer for this member's proxies only.
//
// A command about a proxy another member checks (POST
// /v1/proxies/{id}/pause, /resume, /revive, /outcome) answers 421
// Misdirected Request with {"error": "…", "owner": "ADDR"}: the owner's
// advertised cluster address; send the command to that member's API. POST
// /v1/proxies and DELETE /v1/proxies/{id} answer 409 in a cluster: every
// member loads the same sources, so proxies are added and removed in the
// shared configuration (then reload every member).
//
// /metrics is per member: the pool, proxy and journal series are this
// member's own proxies and journal (scrape every member and sum). A member
// adds its view of the cluster (absent outside one):
//
//	proxyhealth_cluster_members                 live members this member sees (itself included)
//	proxyhealth_cluster_membership_fresh        1 while its lease is confirmed (it checks only then)
//	proxyhealth_cluster_membership_lost         1 once its membership is lost (restart it)
//	proxyhealth_cluster_checked_proxies         proxies this member checks (its share)
//	proxyhealth_cluster_configured_proxies      proxies the shared configuration lists
//	proxyhealth_cluster_replicas                other members' proxy states held for a takeover
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
//	proxyhealth_live_checkpoint_seq                       seq of the live status checkpoint saved (or restored) last:
//	                                                      a start after a crash folds the journal after it
//	proxyhealth_live_checkpoint_failing                   1 while saves of that checkpoint fail, else 0
//	proxyhealth_live_checkpoint_failures_total            failed saves since the engine started
//
// Rotation and the rotating endpoint:
//
//	proxyhealth_panic_mode                               1 while picks are made in panic mode, else 0
//	proxyhealth_rotation_usable, _candidates             usable proxies; unpaused proxies in rotation
//	proxyhealth_proxies_ejected, proxyhealth_ejection_limit  ejected now; how many may be at once
//	proxyhealth_ejections_total, _ejection_returns_total     proxy_ejected, proxy_returned events
//	proxyhealth_panic_episodes_total                     pool_panic_entered events
//	proxyhealth_api_picks_total{strategy,result}         GET /v1/pick answers: result ok, panic, no_proxy;
//	                                                     strategy "default" when none was named
//	proxyhealth_api_outcomes_total{ok,class}             outcomes accepted by POST /v1/proxies/{id}/outcome
//	proxyhealth_endpoint_requests_total{outcome}         through the endpoint: ok, failed, no_proxy,
//	                                                     auth_failed, bad_request (with Options.Traffic)
//	proxyhealth_endpoint_retries_total                   attempts on another upstream after a failure
//	proxyhealth_endpoint_active_connections, _connections_total
//	proxyhealth_endpoint_bytes_total{direction}          up (client to upstream), down
//
// The event counters count from this process's start (the journal tail
// from the head at New); the endpoint series are absent without
// Options.Traffic.
//
// proxyhealth_projection_lag_events used to be one unlabelled series for
// the live status; it now has one series per projection (as the engine
// reports it, so a stopped SQLite view shows its growing lag). Queries of
// the old series become max(proxyhealth_projection_lag_events). With an
// engine that does not report its health, only
// {projection="live status"} is reported, computed from Options.Status.
package httpapi
