// Package projections folds the journal into what proxyhealth shows and
// announces: the live status of the pool (Live), the SQLite view view.db
// (subpackage sqlview), pool degradation events (PoolMonitor) and
// notifications (Notifier). Projections are disposable: each can be rebuilt
// from the journal, and a rebuild gives exactly what incremental
// application gave. Per-proxy state is always folded with events.Evolve,
// the state machine's own rules.
//
// # Retention
//
// Journal retention deletes old events only when the proxy's snapshot
// covers them. A projection that meets an event of a proxy it does not know
// and that is not ProxyAdded starts from the proxy's snapshot
// (journal.LoadSnapshot) and skips the events the snapshot already covers;
// without a snapshot the proxy is adopted with what its retained events say.
//
// # Live
//
// Live is fed by one goroutine (Apply, in seq order, idempotent) and
// queried concurrently. Counts per state, checking and paused flags, and
// latency sums are kept per source and for the pool, incrementally, so
// Summary is O(sources). "Now", for the success-rate windows, is the time
// of the newest applied event (deterministic), unless LiveOptions.Clock is
// set. Per proxy it keeps at most StateChangeCap (16) transitions and
// success counts in 24 hourly and 12 five-minute buckets, so memory is
// bounded whatever the check rate. Removed proxies are forgotten.
//
// History reads a proxy's recent check results from the journal on request
// rather than keeping a copy of them in memory.
//
// # view.db (package sqlview)
//
// SQLite in WAL mode (synchronous=NORMAL, busy_timeout 5 s), schema version
// 1 in PRAGMA user_version. Times are TEXT in RFC 3339, UTC, with exactly
// nine fractional digits ("2025-03-04T05:06:07.000000000Z"), so text order is
// time order and SQLite's date functions read them. Latencies are REAL
// milliseconds. Booleans are 0/1. States and failure classes use the
// lowercase API names (events.StateName, events.ClassName).
//
//	proxies (WITHOUT ROWID) — one row per current proxy; a removed proxy's
//	    row is deleted (its history rows stay until pruned):
//	  id TEXT PRIMARY KEY, url_redacted, source, state, paused,
//	  has_credentials, consecutive_successes, consecutive_failures,
//	  passive_failures, recovery_attempt, total_checks, total_failures,
//	  last_check_at TEXT, last_check_unix_ms INTEGER, last_change_at,
//	  last_error_class ('' if none), last_error, last_status_code,
//	  last_latency_ms (NULL before the first check), latency_ewma_ms (EWMA,
//	  alpha 0.2, of passed checks' total latency; NULL before the first),
//	  added_at, updated_seq (global seq of the proxy's last event),
//	  state_pb BLOB (the proxy's events.ToSnapshot, protobuf: the exact
//	  state, reloaded on open)
//	  indexes (state, source), (source, state)
//	check_history — a view (UNION ALL) of check_history_archive and
//	    check_history_recent: one row per check, kept 24 h (up to a minute
//	    more: rows are deleted a minute at a time) before the newest
//	    applied event (deterministic pruning: a rebuild equals
//	    incremental):
//	  seq, proxy_id, at, ok, class ('' when ok), status_code, connect_ms,
//	  first_byte_ms, total_ms, message
//	  check_history_recent: the latest checks, appended (seq INTEGER
//	    PRIMARY KEY, no other index); once it holds 16 rows a proxy
//	    (at least 4,096, at most 524,288) they move to the archive, sorted
//	    by proxy and time
//	  check_history_archive: the rest; indexes (proxy_id, at), (at)
//	state_changes — kept 7 days (up to a minute more) before the newest
//	    applied event:
//	  seq INTEGER PRIMARY KEY, proxy_id, at, from_state, to_state, reason,
//	  recovery_attempt; indexes (proxy_id, at), (at)
//	pool_events — never pruned:
//	  seq INTEGER PRIMARY KEY, at, type ('pool_degraded'|'pool_recovered'),
//	  healthy_pct, threshold, healthy, total
//	projection_offsets (WITHOUT ROWID):
//	  name TEXT PRIMARY KEY ('sqlview'), seq (last applied journal seq),
//	  newest_at_unix_nano (newest applied event time; the pruning clock)
//	sources (VIEW over proxies, GROUP BY source): source, total, unknown,
//	  healthy, degraded, unhealthy, recovering, failed, paused,
//	  health_percentage, avg_latency_ms (mean of latency_ewma_ms),
//	  last_check_at
//
// Events are applied in batches, each in one transaction that also writes
// the offset: exactly once across crashes. On open the file is checked
// (schema version, tables, state blobs, offset ≤ journal head and not
// behind the journal's retention); problems are errors naming the file and
// the fix (`proxyhealth rebuild`), or, with RebuildIfInvalid, the file is
// moved aside and rebuilt. Rebuilds write view.db.tmp and rename it into
// place.
//
// # Pool events and notifications
//
// PoolMonitor journals PoolDegraded when healthy / known × 100 falls below
// the threshold (default 50 %) and PoolRecovered when it reaches threshold
// + margin (default 10 points): edge-triggered, once per episode, persisted
// before anything acts on it, and recovered from the journal on restart.
// Proxies in state unknown are left out of the share, and the share is only
// evaluated once at least half of the pool (MinKnown) has a known state, so
// start-up does not raise a spurious alarm.
//
// Notifier derives proxy_down (entering unhealthy, once per down episode),
// proxy_recovered (healthy again after an episode), pool_degraded and
// pool_recovered from committed events, and delivers them to subscribers
// (buffered channels that drop their oldest notification when full),
// callbacks and webhooks (JSON POST; one goroutine and bounded queue per
// webhook, drop-oldest on overflow, per-attempt timeout, retries with
// exponential backoff and jitter; URLs are only ever logged as
// scheme://host). See Notification for the JSON shape.
package projections
