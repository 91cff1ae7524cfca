package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/proxyhealth/proxyhealth"
)

// runSettings are the command-line settings of `proxyhealth run`. Check
// settings given here override the config file for every source.
type runSettings struct {
	fs          *flagSet
	proxies     stringsFlag
	config      string
	data        string
	listen      string
	token       string
	logFormat   *choiceFlag
	logLevel    string
	concurrency int
	retention   time.Duration
	ckptEvery   time.Duration
	startFresh  bool
	allowHosts  stringsFlag
	serve       string
	strategy    string
	// sourceIP binds every check connection (probe.Config.SourceIP).
	sourceIP string
	// cluster membership (see proxyhealth.ClusterConfig)
	cluster, advertise string
	etcd               stringsFlag
	leaseTTL           time.Duration

	interval, timeout, recoveryCooldown time.Duration
	checkURL                            string
	unhealthy, healthy, maxRecovery     uint
}

func (r *runSettings) register(fs *flagSet) {
	r.fs = fs
	d := proxyhealth.DefaultHealthConfig()
	fs.Var(&r.proxies, "proxies", "proxy list `FILE` (repeatable): one URL a line; the source is named after the file without its extension, or use NAME=FILE")
	fs.StringVar(&r.config, "config", "", "YAML config `FILE` (sources with their proxies and check settings); flags override it")
	fs.StringVar(&r.data, "data", defaultData, "data `DIR` holding journal.db and view.db")
	fs.StringVar(&r.listen, "listen", defaultListen, "`ADDR` of the HTTP API, metrics and dashboard")
	fs.StringVar(&r.token, "token", "", "bearer `TOKEN` required by the API (default $PROXYHEALTH_TOKEN); required on a non-loopback --listen")
	fs.Var(&r.allowHosts, "allow-host", "also answer API requests whose Host is `NAME` (repeatable; NAME matches any port, .example.net a domain and its subdomains); loopback names and the listen address are always allowed, other names get 421 (protection against DNS rebinding)")
	fs.StringVar(&r.serve, "serve", "", "also serve the rotating endpoint on `ADDR`: an HTTP forward proxy (absolute-form and CONNECT) and a SOCKS5 proxy on the same port, forwarding each request through a healthy proxy; off loopback it requires users (config file serve.users)")
	fs.StringVar(&r.strategy, "strategy", string(proxyhealth.RoundRobin), "how the rotating endpoint picks a proxy: `NAME` = "+strategyNames()+" (sticky needs a session key: header X-Proxyhealth-Session or user NAME-session-KEY; without one it picks round-robin)")
	fs.StringVar(&r.sourceIP, "check-source-ip", "", "local `IP` every check connection is bound to (one of this host's addresses; the port stays the kernel's choice): egress through one interface, or one loopback address per cluster member")
	fs.StringVar(&r.cluster, "cluster", "", "join the cluster `NAME`: every member loads the same configuration and checks its share of the proxies (needs --etcd and --advertise)")
	fs.Var(&r.etcd, "etcd", "etcd `ENDPOINTS` holding the cluster's membership (comma-separated host:port or URLs; repeatable)")
	fs.StringVar(&r.advertise, "advertise", "", "`HOST:PORT` this cluster member listens on for the other members and advertises to them")
	r.leaseTTL = proxyhealth.DefaultLeaseTTL
	fs.Var(durationFlag{&r.leaseTTL}, "lease-ttl", "the cluster member's etcd lease (`DURATION`): a member that stops renewing it is dropped after it and its proxies go to the others")
	fs.BoolVar(&r.startFresh, "start-fresh", false, "start even though journal.db is empty or behind view.db (history was lost): a new journal replaces the empty file and the view is rebuilt; without it such a start is refused")
	r.logFormat = newChoice("text", "text", "json")
	fs.Var(r.logFormat, "log-format", "log `FORMAT` on stderr: text or json")
	fs.StringVar(&r.logLevel, "log-level", "info", "log `LEVEL`: debug, info, warn or error")
	fs.IntVar(&r.concurrency, "concurrency", proxyhealth.DefaultConcurrency, "maximum checks in flight")
	r.retention = proxyhealth.DefaultRetention
	fs.Var(durationFlag{&r.retention}, "retention", "how long journal events are kept (`DURATION`); the per-proxy history of the live status covers 24h")
	r.ckptEvery = proxyhealth.DefaultCheckpointEvery
	fs.Var(durationFlag{&r.ckptEvery}, "checkpoint-every", "how often the live status is saved to DATA/live.checkpoint while checks run (`DURATION`, at least 1s; 0 = only at a clean stop): a start after a crash folds the journal only from there")
	r.interval, r.timeout, r.recoveryCooldown = d.Interval, proxyhealth.DefaultTimeout, d.RecoveryCooldown
	fs.Var(durationFlag{&r.interval}, "interval", "`DURATION` between checks of a healthy proxy (at least "+duration(proxyhealth.MinInterval).String()+")")
	fs.Var(durationFlag{&r.timeout}, "timeout", "`DURATION` of one check")
	fs.StringVar(&r.checkURL, "check-url", proxyhealth.DefaultTargetURL, "`URL` fetched through each proxy (http or https)")
	fs.UintVar(&r.unhealthy, "unhealthy-threshold", uint(d.UnhealthyThreshold), "consecutive failures that make a proxy unhealthy")
	fs.UintVar(&r.healthy, "healthy-threshold", uint(d.HealthyThreshold), "consecutive successes that make a proxy healthy again")
	fs.Var(durationFlag{&r.recoveryCooldown}, "recovery-cooldown", "base wait (`DURATION`) of an unhealthy proxy before a recovery probe, doubled per attempt")
	fs.UintVar(&r.maxRecovery, "max-recovery-attempts", uint(d.MaxRecoveryAttempts), "failed recoveries before a proxy is marked failed (0 = never give up)")
}

// overrides returns the check settings given on the command line.
func (r *runSettings) overrides() (checkSettings, error) {
	var o checkSettings
	dur := func(name string, v time.Duration) *duration {
		if !r.fs.isSet(name) {
			return nil
		}
		d := duration(v)
		return &d
	}
	o.Interval, o.Timeout, o.RecoveryCooldown = dur("interval", r.interval), dur("timeout", r.timeout), dur("recovery-cooldown", r.recoveryCooldown)
	if r.fs.isSet("check-url") {
		o.CheckURL = &r.checkURL
	}
	if r.fs.isSet("check-source-ip") {
		o.SourceIP = &r.sourceIP
	}
	for _, u := range []struct {
		name string
		v    uint
		dst  **int
	}{{"unhealthy-threshold", r.unhealthy, &o.UnhealthyThreshold}, {"healthy-threshold", r.healthy, &o.HealthyThreshold},
		{"max-recovery-attempts", r.maxRecovery, &o.MaxRecoveryAttempts}} {
		if !r.fs.isSet(u.name) {
			continue
		}
		if u.v > maxCount {
			return o, &configError{"--" + u.name, fmt.Sprintf("%d: must be at most %d", u.v, maxCount)}
		}
		v := int(u.v)
		*u.dst = &v
	}
	return o, nil
}

// daemonConfig is everything the daemon needs, from flags and the file.
type daemonConfig struct {
	engine    proxyhealth.Config
	listen    string
	logFormat string
	logLevel  slog.Level
	token     string
	// allowHosts are the extra Host names the API answers to.
	allowHosts []string
	// serve is the rotating endpoint's address ("": none), strategy its
	// default strategy, users its users (name → password).
	serve    string
	strategy proxyhealth.Strategy
	users    map[string]string
}

// checkSourceName applies the engine's rule for source names (the one
// proxyhealth.Config.Validate applies) and returns the rule when name
// breaks it.
func checkSourceName(name string) error {
	if name == "" {
		return errors.New("a name is required")
	}
	if proxyhealth.ValidateSourceName(name) != nil {
		return errors.New(proxyhealth.SourceNameRule)
	}
	return nil
}

// proxyURLError is the reason of a proxyhealth.ParseProxy error, without
// the package prefixes.
func proxyURLError(err error) string {
	return strings.TrimPrefix(strings.TrimPrefix(err.Error(), proxyhealth.ErrBadConfig.Error()+": "), "probe: ")
}

// minRetention is the shortest journal retention accepted.
const minRetention = time.Hour

// load reads the config file and proxy lists and merges them with the
// flags. Every problem is a *configError naming the file and line (or the
// flag) and the field; nothing is started. It refuses at least what
// proxyhealth.Config.Validate refuses, and also the zero and negative
// values the engine would silently replace with a default.
func (r *runSettings) load(getenv func(string) string) (daemonConfig, error) {
	fc := &fileConfig{}
	base := "."
	if r.config != "" {
		var err error
		if fc, err = readConfigFile(r.config); err != nil {
			return daemonConfig{}, err
		}
		base = filepath.Dir(r.config)
	}
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(base, p)
	}
	// bad is the error of a top-level setting, from its flag or the file.
	bad := func(flag, key string, value any, rule string) error {
		if r.fs.isSet(flag) {
			return &configError{"--" + flag, fmt.Sprintf("%v: %s", value, rule)}
		}
		return &configError{fc.where(key), fmt.Sprintf("%s %v: %s", key, value, rule)}
	}
	dc := daemonConfig{listen: defaultListen, logFormat: "text"}
	dc.engine.DataDir = defaultData
	switch {
	case r.fs.isSet("data"):
		dc.engine.DataDir = r.data
	case fc.Data != nil:
		if *fc.Data == "" {
			return dc, bad("data", "data", `""`, "want a directory (default "+defaultData+")")
		}
		dc.engine.DataDir = rel(*fc.Data)
	}
	switch {
	case r.fs.isSet("listen"):
		dc.listen = r.listen
	case fc.Listen != nil:
		dc.listen = *fc.Listen
	}
	if _, _, err := net.SplitHostPort(dc.listen); err != nil {
		return dc, bad("listen", "listen", short(dc.listen), "want HOST:PORT, e.g. "+defaultListen)
	}
	dc.engine.Concurrency = proxyhealth.DefaultConcurrency
	switch {
	case r.fs.isSet("concurrency"):
		dc.engine.Concurrency = r.concurrency
	case fc.Concurrency != nil:
		dc.engine.Concurrency = *fc.Concurrency
	}
	if dc.engine.Concurrency < 1 {
		return dc, bad("concurrency", "concurrency", dc.engine.Concurrency, "must be at least 1 (checks in flight)")
	}
	dc.engine.Retention = r.retention
	if !r.fs.isSet("retention") && fc.Retention != nil {
		dc.engine.Retention = time.Duration(*fc.Retention)
	}
	if dc.engine.Retention < minRetention {
		return dc, bad("retention", "retention", duration(dc.engine.Retention), "must be at least "+duration(minRetention).String()+" (e.g. 7d; write 3650d to keep ten years)")
	}
	every := r.ckptEvery
	if !r.fs.isSet("checkpoint-every") && fc.CheckpointEvery != nil {
		every = time.Duration(*fc.CheckpointEvery)
	}
	switch {
	case every == 0:
		dc.engine.CheckpointEvery = -1 // only at a clean stop
	case every < time.Second:
		return dc, bad("checkpoint-every", "checkpoint_every", duration(every), "must be at least 1s, or 0 to save the live status only at a clean stop (e.g. 5m)")
	default:
		dc.engine.CheckpointEvery = every
	}
	switch {
	case r.fs.isSet("log-format"):
		dc.logFormat = r.logFormat.value
	case fc.LogFormat != nil:
		if *fc.LogFormat != "text" && *fc.LogFormat != "json" {
			return dc, bad("log-format", "log_format", short(*fc.LogFormat), "want text or json")
		}
		dc.logFormat = *fc.LogFormat
	}
	lvl, err := parseLevel(r.logLevel)
	if err != nil {
		return dc, &configError{"--log-level", err.Error()}
	}
	dc.logLevel = lvl
	dc.token = r.token
	dc.engine.StartFresh = r.startFresh
	dc.allowHosts = r.allowHosts
	if dc.token == "" {
		dc.token = getenv("PROXYHEALTH_TOKEN")
	}
	if !isLoopback(dc.listen) && dc.token == "" {
		return dc, &configError{"--listen " + dc.listen, "not a loopback address: set --token or PROXYHEALTH_TOKEN so that the API is not open to the network"}
	}

	if dc.engine.Webhooks, err = fc.webhooks(getenv); err != nil {
		return dc, err
	}
	if dc.engine.PoolThreshold, dc.engine.PoolMargin, err = fc.pool(); err != nil {
		return dc, err
	}
	if err := r.loadServe(fc, getenv, &dc); err != nil {
		return dc, err
	}
	if err := r.loadCluster(fc, &dc); err != nil {
		return dc, err
	}

	over, err := r.overrides()
	if err != nil {
		return dc, err
	}
	defaults := settingsLayer{s: &fc.Defaults, fc: fc, prefix: "defaults."}
	command := settingsLayer{s: &over}
	for _, l := range []settingsLayer{defaults, command} {
		if err := l.validate(); err != nil {
			return dc, err
		}
	}
	byName := map[string]int{}
	// newSource merges the layers of check settings of one source: the
	// file's defaults, the source's own (nil for --proxies and the default
	// source), the command line.
	newSource := func(name string, own *settingsLayer, label, where string) (proxyhealth.SourceConfig, error) {
		sc := proxyhealth.SourceConfig{Name: name, Health: proxyhealth.DefaultHealthConfig()}
		layers := []settingsLayer{defaults}
		if own != nil {
			layers = append(layers, *own)
		}
		layers = append(layers, command)
		for _, l := range layers {
			if err := l.s.apply(&sc.Health, &sc.Probe, base); err != nil {
				lw := "command line"
				if l.fc != nil {
					// The error starts with the field ("ca_file: ...").
					field, _, _ := strings.Cut(err.Error(), ":")
					lw = l.fc.where(l.prefix + strings.Fields(field + " x")[0])
				}
				return sc, &configError{lw, l.prefix + strings.TrimPrefix(err.Error(), "probe: ")}
			}
		}
		if err := checkMerged(layers, &sc); err != nil {
			return sc, err
		}
		// What the engine checks, for what the layers could not check
		// alone (e.g. body_pattern with method HEAD).
		if err := sc.Health.Validate(); err != nil {
			return sc, &configError{where, label + ": " + err.Error()}
		}
		if err := sc.Probe.Validate(); err != nil {
			return sc, &configError{where, label + ": " + err.Error()}
		}
		return sc, nil
	}
	for i, sf := range fc.Sources {
		label := fmt.Sprintf("sources[%d]", i)
		where := fc.where(label)
		if err := checkSourceName(sf.Name); err != nil {
			return dc, &configError{fc.where(label + ".name"), fmt.Sprintf("%s.name %s: %v", label, short(sf.Name), err)}
		}
		if _, dup := byName[sf.Name]; dup {
			return dc, &configError{where, fmt.Sprintf("source %q is defined twice", sf.Name)}
		}
		own := settingsLayer{s: &sf.checkSettings, fc: fc, prefix: label + "."}
		if err := own.validate(); err != nil {
			return dc, err
		}
		sc, err := newSource(sf.Name, &own, label, where)
		if err != nil {
			return dc, err
		}
		sc.Tags = sf.Tags
		for i, tag := range sf.Tags {
			if strings.TrimSpace(tag) == "" || strings.ContainsAny(tag, ",") {
				return dc, &configError{fc.where(fmt.Sprintf("%s.tags", label)), fmt.Sprintf("%s.tags[%d] %s: want a non-empty tag without ','", label, i, short(tag))}
			}
		}
		if sf.Weight != nil {
			if !(*sf.Weight > 0) || math.IsInf(*sf.Weight, 0) {
				return dc, &configError{fc.where(label + ".weight"), fmt.Sprintf("%s.weight %v: want a positive number (the share under the weighted strategy; default 1)", label, *sf.Weight)}
			}
			sc.Weight = *sf.Weight
		}
		for j, p := range sf.Proxies {
			_, err := proxyhealth.ParseProxy(p.value)
			if err == nil {
				sc.Proxies = append(sc.Proxies, p.value)
				continue
			}
			if !strings.Contains(p.value, " #") {
				return dc, &configError{fmt.Sprintf("%s:%d", r.config, p.line), fmt.Sprintf("%s.proxies[%d]: %s", label, j, proxyURLError(err))}
			}
			// "URL #tags=a,b weight=2", as in a list file.
			entries, err := proxyhealth.ParseProxyList(label+".proxies", strings.NewReader(p.value))
			if err != nil || len(entries) != 1 {
				reason := "want URL [#tags=a,b] [weight=N]"
				if err != nil {
					_, reason, _ = strings.Cut(err.Error(), ": ")
				}
				return dc, &configError{fmt.Sprintf("%s:%d", r.config, p.line), fmt.Sprintf("%s.proxies[%d]: %s", label, j, reason)}
			}
			sc.Entries = append(sc.Entries, entries...)
		}
		for _, pf := range sf.ProxyFiles {
			list, err := readProxyFile(rel(pf))
			if err != nil {
				return dc, err
			}
			sc.Entries = append(sc.Entries, list...)
		}
		if err := sf.listSettings(fc, label, rel, getenv, &sc); err != nil {
			return dc, err
		}
		byName[sf.Name] = len(dc.engine.Sources)
		dc.engine.Sources = append(dc.engine.Sources, sc)
	}
	for _, v := range r.proxies {
		pa, err := parseProxiesArg(v)
		if err != nil {
			return dc, err
		}
		// Read now so that a bad file stops start-up (and a reload) with
		// FILE:LINE; the engine then watches it and applies its changes.
		if _, err := readProxyFile(pa.path); err != nil {
			return dc, err
		}
		abs, err := filepath.Abs(pa.path)
		if err != nil {
			return dc, &configError{"--proxies " + v, err.Error()}
		}
		watched := proxyhealth.SourceList{File: abs}
		if i, ok := byName[pa.source]; ok {
			if l := dc.engine.Sources[i].List; l.URL != "" || l.File != "" {
				return dc, &configError{"--proxies " + v, fmt.Sprintf("source %q already takes its proxies from a list (%s); a source follows one list: give this file another source name with --proxies NAME=FILE", pa.source, listOrigin(l))}
			}
			dc.engine.Sources[i].List = watched
			continue
		}
		sc, err := newSource(pa.source, nil, "source "+pa.source, "--proxies "+v)
		if err != nil {
			return dc, err
		}
		sc.List = watched
		byName[pa.source] = len(dc.engine.Sources)
		dc.engine.Sources = append(dc.engine.Sources, sc)
	}
	// A "default" source always exists, so that POST /v1/proxies without a
	// source works.
	if _, ok := byName[proxyhealth.DefaultSource]; !ok {
		where := "defaults"
		if r.config != "" {
			where = r.config
		}
		sc, err := newSource(proxyhealth.DefaultSource, nil, "defaults", where)
		if err != nil {
			return dc, err
		}
		dc.engine.Sources = append(dc.engine.Sources, sc)
	}
	if err := dc.engine.Validate(); err != nil {
		where := r.config
		if where == "" {
			where = "configuration"
		}
		return dc, &configError{where, strings.TrimPrefix(err.Error(), "proxyhealth: ")}
	}
	return dc, nil
}

// checkMerged checks the settings of a source that depend on each other,
// once its layers are merged into sc, and names the field of the layer that
// set the offending value.
func checkMerged(layers []settingsLayer, sc *proxyhealth.SourceConfig) error {
	// last returns the index of the last layer that sets a field, -1 for
	// the built-in default.
	last := func(set func(*checkSettings) bool) int {
		for i := len(layers) - 1; i >= 0; i-- {
			if set(layers[i].s) {
				return i
			}
		}
		return -1
	}
	h := &sc.Health
	if h.SuspectInterval > h.Interval {
		si := last(func(s *checkSettings) bool { return s.SuspectInterval != nil })
		ii := last(func(s *checkSettings) bool { return s.Interval != nil })
		if si >= 0 && si >= ii {
			return layers[si].errorf("suspect_interval", duration(h.SuspectInterval), fmt.Sprintf("must not exceed interval (%v)", duration(h.Interval)))
		}
		// A shorter interval set closer to the source (down to 100ms, for
		// tests and demos) brings the suspect re-probe interval down with
		// it.
		h.SuspectInterval = h.Interval
	}
	if h.MaxRecoveryCooldown < h.RecoveryCooldown {
		ri := last(func(s *checkSettings) bool { return s.RecoveryCooldown != nil })
		mi := last(func(s *checkSettings) bool { return s.MaxRecoveryCooldown != nil })
		if mi > ri {
			return layers[mi].errorf("max_recovery_cooldown", duration(h.MaxRecoveryCooldown), fmt.Sprintf("must be at least recovery_cooldown (%v)", duration(h.RecoveryCooldown)))
		}
		return layers[ri].errorf("recovery_cooldown", duration(h.RecoveryCooldown), fmt.Sprintf("must not exceed max_recovery_cooldown (%v); raise that too", duration(h.MaxRecoveryCooldown)))
	}
	return nil
}

// strategyNames lists the pick strategies for usage texts.
func strategyNames() string {
	var names []string
	for _, s := range proxyhealth.Strategies {
		names = append(names, string(s))
	}
	return strings.Join(names, ", ")
}

// loadServe reads the rotating endpoint's settings: --serve and --strategy
// over the file's serve section, the rotation settings, the users.
func (r *runSettings) loadServe(fc *fileConfig, getenv func(string) string, dc *daemonConfig) error {
	sf := fc.Serve
	bad := func(key string, value any, rule string) error {
		return &configError{fc.where("serve." + key), fmt.Sprintf("serve.%s %v: %s", key, value, rule)}
	}
	switch {
	case r.fs.isSet("serve"):
		dc.serve = r.serve
	case sf.Listen != nil:
		dc.serve = *sf.Listen
	}
	if dc.serve != "" {
		if _, _, err := net.SplitHostPort(dc.serve); err != nil {
			if r.fs.isSet("serve") {
				return &configError{"--serve", fmt.Sprintf("%s: want HOST:PORT, e.g. 127.0.0.1:8899", short(dc.serve))}
			}
			return bad("listen", short(dc.serve), "want HOST:PORT, e.g. 127.0.0.1:8899")
		}
	}
	dc.strategy = proxyhealth.RoundRobin
	switch {
	case r.fs.isSet("strategy"):
		dc.strategy = proxyhealth.Strategy(r.strategy)
		if !slices.Contains(proxyhealth.Strategies, dc.strategy) {
			return &configError{"--strategy", fmt.Sprintf("%s: want one of %s", short(r.strategy), strategyNames())}
		}
	case sf.Strategy != nil:
		dc.strategy = proxyhealth.Strategy(*sf.Strategy)
		if !slices.Contains(proxyhealth.Strategies, dc.strategy) {
			return bad("strategy", short(*sf.Strategy), "want one of "+strategyNames())
		}
	}
	rc := &dc.engine.Rotation
	if sf.IncludeDegraded != nil {
		rc.IncludeDegraded = *sf.IncludeDegraded
	}
	if sf.DisablePanic != nil {
		rc.DisablePanic = *sf.DisablePanic
	}
	if v := sf.PanicThreshold; v != nil {
		if !(*v > 0 && *v <= 1) {
			return bad("panic_threshold", *v, "want a share in (0, 1], e.g. 0.5 (turn panic mode off with disable_panic: true)")
		}
		rc.PanicThreshold = *v
	}
	if v := sf.MaxEjectionShare; v != nil {
		if !(*v > 0 && *v <= 1) {
			return bad("max_ejection_share", *v, "want a share in (0, 1], e.g. 0.5")
		}
		rc.MaxEjectionShare = *v
	}
	for i, u := range sf.Users {
		key := fmt.Sprintf("users[%d]", i)
		if u.Name == "" || strings.ContainsAny(u.Name, ":") {
			return &configError{fc.where("serve." + key), fmt.Sprintf("serve.%s.name %s: want a user name without ':'", key, short(u.Name))}
		}
		if dc.users == nil {
			dc.users = map[string]string{}
		}
		if _, dup := dc.users[u.Name]; dup {
			return &configError{fc.where("serve." + key), fmt.Sprintf("serve.%s.name %s: listed twice", key, short(u.Name))}
		}
		switch {
		case u.PasswordEnv != nil:
			pw := getenv(*u.PasswordEnv)
			if pw == "" {
				return &configError{fc.where("serve." + key), fmt.Sprintf("serve.%s.password_env: $%s is empty or not set", key, *u.PasswordEnv)}
			}
			dc.users[u.Name] = pw
		case u.Password != nil && *u.Password != "":
			dc.users[u.Name] = *u.Password
		default:
			return &configError{fc.where("serve." + key), fmt.Sprintf("serve.%s: set password_env (the name of an environment variable holding the password) or password", key)}
		}
	}
	if dc.serve != "" && !isLoopback(dc.serve) && len(dc.users) == 0 {
		where := "--serve " + dc.serve
		if !r.fs.isSet("serve") {
			where = fc.where("serve.listen")
		}
		return &configError{where, "not a loopback address: the rotating endpoint would be an open proxy; list its users in the config file (serve.users, with password_env)"}
	}
	return nil
}

// isLoopback reports whether a listen address only accepts local
// connections.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// notificationTypes are the notification types a webhook may ask for.
var notificationTypes = []string{proxyhealth.NotifyProxyDown, proxyhealth.NotifyProxyRecovered, proxyhealth.NotifyPoolDegraded, proxyhealth.NotifyPoolRecovered}

// maxWebhookTimeout bounds a webhook's timeout: each webhook delivers one
// notification at a time, so a longer wait only lets its queue overflow.
const maxWebhookTimeout = 5 * time.Minute

// webhooks checks the file's webhooks and turns them into the engine's
// options. Errors name the field and its line; they show at most the
// URL's scheme://host and nothing of a secret.
func (fc *fileConfig) webhooks(getenv func(string) string) ([]proxyhealth.WebhookConfig, error) {
	var out []proxyhealth.WebhookConfig
	for i, w := range fc.Webhooks {
		label := fmt.Sprintf("webhooks[%d]", i)
		errorf := func(field, format string, args ...any) error {
			key := label
			if field != "" {
				key += "." + field
			}
			return &configError{fc.where(key), key + ": " + fmt.Sprintf(format, args...)}
		}
		if w.URL == nil || strings.TrimSpace(*w.URL) == "" {
			return nil, errorf("", "url is required (the http:// or https:// URL receiving the notifications as JSON POSTs)")
		}
		u, err := url.Parse(*w.URL)
		if err != nil {
			return nil, errorf("url", "not a URL (not shown: it may hold credentials); want http:// or https:// with a host")
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
			target := "not shown"
			if u.Scheme != "" && u.Host != "" {
				target = u.Scheme + "://" + u.Host
			}
			return nil, errorf("url", "(%s) want an http:// or https:// URL with a host", target)
		}
		o := proxyhealth.WebhookConfig{URL: *w.URL}
		if w.Events != nil && len(w.Events) == 0 {
			return nil, errorf("events", "an empty list sends nothing; leave events out to send every type (%s)", strings.Join(notificationTypes, ", "))
		}
		for j, e := range w.Events {
			if !slices.Contains(notificationTypes, e) {
				return nil, &configError{fc.where(fmt.Sprintf("%s.events[%d]", label, j)),
					fmt.Sprintf("%s.events[%d] %s: not a notification type; want %s", label, j, short(e), strings.Join(notificationTypes, ", "))}
			}
			if !slices.Contains(o.Types, e) {
				o.Types = append(o.Types, e)
			}
		}
		if w.Timeout != nil {
			if d := time.Duration(*w.Timeout); d <= 0 || d > maxWebhookTimeout {
				return nil, errorf("timeout", "%v: must be more than 0s and at most %v (default %v)", *w.Timeout, duration(maxWebhookTimeout), duration(proxyhealth.DefaultWebhookTimeout))
			}
			o.Timeout = time.Duration(*w.Timeout)
		}
		secret, err := w.secret(getenv, errorf)
		if err != nil {
			return nil, err
		}
		o.Secret = secret
		out = append(out, o)
	}
	return out, nil
}

// secret returns the webhook's secret, from secret or from the
// environment variable secret_env names ("" when neither is set).
func (w webhookFile) secret(getenv func(string) string, errorf func(field, format string, args ...any) error) (string, error) {
	switch {
	case w.Secret != nil && w.SecretEnv != nil:
		return "", errorf("secret_env", "set secret or secret_env, not both")
	case w.Secret != nil:
		if *w.Secret == "" {
			return "", errorf("secret", "is empty; leave it out for unsigned notifications")
		}
		return *w.Secret, nil
	case w.SecretEnv != nil:
		name := *w.SecretEnv
		if !envNameRE.MatchString(name) {
			return "", errorf("secret_env", "%s: want the name of an environment variable (letters, digits and '_')", short(name))
		}
		v := getenv(name)
		if v == "" {
			return "", errorf("secret_env", "the environment variable %s is not set or empty", name)
		}
		return v, nil
	}
	return "", nil
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// poolThreshold and poolMargin are the values the engine applies for
// Config.PoolThreshold and PoolMargin (0: the default; a negative margin:
// none).
func poolThreshold(t float64) float64 {
	if t == 0 {
		return proxyhealth.DefaultPoolThreshold
	}
	return t
}

func poolMargin(m float64) float64 {
	if m == 0 {
		return proxyhealth.DefaultPoolMargin
	}
	return max(m, 0)
}

// pool checks the pool monitor's settings and returns them as the engine
// takes them (0 means the engine's default; a margin of 0 is passed as
// a negative one, which the engine takes as no margin).
func (fc *fileConfig) pool() (threshold, margin float64, err error) {
	p := fc.Pool
	if t := p.DegradedThreshold; t != nil {
		if !(*t > 0 && *t <= 100) {
			return 0, 0, &configError{fc.where("pool.degraded_threshold"),
				fmt.Sprintf("pool.degraded_threshold %v: must be more than 0 and at most 100 (healthy percentage; default %v)", *t, proxyhealth.DefaultPoolThreshold)}
		}
		threshold = *t
	}
	if m := p.RecoveryMargin; m != nil {
		if !(*m >= 0 && *m <= 100) {
			return 0, 0, &configError{fc.where("pool.recovery_margin"),
				fmt.Sprintf("pool.recovery_margin %v: must be between 0 and 100 (percentage points; default %v)", *m, proxyhealth.DefaultPoolMargin)}
		}
		margin = *m
		if margin == 0 {
			margin = -1
		}
	}
	return threshold, margin, nil
}

// listOrigin names where a source's list comes from, for an error.
func listOrigin(l proxyhealth.SourceList) string {
	if l.File != "" {
		return l.File
	}
	return "a list URL"
}

// listSettings reads a source's list fields (url or file, refresh,
// shrink_guard, confirm_after, grace, headers).
func (sf *sourceFile) listSettings(fc *fileConfig, label string, rel func(string) string, getenv func(string) string, sc *proxyhealth.SourceConfig) error {
	bad := func(key string, v any, rule string) error {
		return &configError{fc.where(label + "." + key), fmt.Sprintf("%s.%s %v: %s", label, key, v, rule)}
	}
	l := &sc.List
	switch {
	case sf.URL != nil && sf.File != nil:
		return bad("file", short(*sf.File), "give url (a provider's list) or file (a watched list), not both")
	case sf.URL != nil:
		u := *sf.URL
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return bad("url", "(not shown)", "want an http:// or https:// URL of a proxy list")
		}
		l.URL = u
	case sf.File != nil:
		if *sf.File == "" {
			return bad("file", `""`, "want the path of a proxy list file")
		}
		abs, err := filepath.Abs(rel(*sf.File))
		if err != nil {
			return bad("file", short(*sf.File), err.Error())
		}
		if _, err := readProxyFile(abs); err != nil {
			return err
		}
		l.File = abs
	case sf.Refresh != nil || sf.ShrinkGuard != nil || len(sf.ListHeaders) > 0 || sf.Grace != nil || sf.ConfirmAfter != nil:
		return bad("url", "(none)", "refresh, shrink_guard, grace, confirm_after and list_headers apply to a list: set url or file")
	default:
		return nil
	}
	if sf.Refresh != nil {
		l.Refresh = time.Duration(*sf.Refresh)
		if min := time.Second; l.URL == "" {
			if l.Refresh < 100*time.Millisecond {
				return bad("refresh", duration(l.Refresh), "want at least 100ms")
			}
		} else if l.Refresh < min {
			return bad("refresh", duration(l.Refresh), "want at least 1s (the default is 10m; providers rate-limit)")
		}
	}
	if sf.ShrinkGuard != nil {
		if g := *sf.ShrinkGuard; !(g > 0 && g <= 1) {
			return bad("shrink_guard", g, "want a share in (0, 1], e.g. 0.5 (1: never hold a shrunk list)")
		}
		l.ShrinkGuard = *sf.ShrinkGuard
	}
	if sf.Grace != nil {
		if *sf.Grace < 1 || *sf.Grace > 1000 {
			return bad("grace", *sf.Grace, "want 1 to 1000 refreshes")
		}
		l.Grace = *sf.Grace
	}
	if sf.ConfirmAfter != nil {
		if *sf.ConfirmAfter < 1 || *sf.ConfirmAfter > 1000 {
			return bad("confirm_after", *sf.ConfirmAfter, "want 1 to 1000 refreshes")
		}
		l.ConfirmAfter = *sf.ConfirmAfter
	}
	if len(sf.ListHeaders) > 0 {
		if l.URL == "" {
			return bad("list_headers", "(not shown)", "list_headers apply to a list URL")
		}
		h, err := proxyhealth.ResolveListHeaders(sf.ListHeaders, getenv)
		if err != nil {
			return &configError{fc.where(label + ".list_headers"), label + ".list_headers: " + err.Error()}
		}
		l.Headers = h
	}
	return nil
}

// clusterFile is the cluster section of the config file.
type clusterFile struct {
	Name      *string   `yaml:"name"`
	Etcd      []string  `yaml:"etcd"`
	Advertise *string   `yaml:"advertise"`
	LeaseTTL  *duration `yaml:"lease_ttl"`
}

// loadCluster reads the cluster membership from the flags and the file
// (flags win).
func (r *runSettings) loadCluster(fc *fileConfig, dc *daemonConfig) error {
	c := &dc.engine.Cluster
	if fc.Cluster.Name != nil {
		c.Name = *fc.Cluster.Name
	}
	if r.fs.isSet("cluster") {
		c.Name = r.cluster
	}
	c.Etcd = fc.Cluster.Etcd
	if r.fs.isSet("etcd") {
		c.Etcd = nil
		for _, v := range r.etcd {
			for _, ep := range strings.Split(v, ",") {
				if ep = strings.TrimSpace(ep); ep != "" {
					c.Etcd = append(c.Etcd, ep)
				}
			}
		}
	}
	if fc.Cluster.Advertise != nil {
		c.Advertise = *fc.Cluster.Advertise
	}
	if r.fs.isSet("advertise") {
		c.Advertise = r.advertise
	}
	if c.Name == "" {
		c.Etcd, c.Advertise = nil, ""
		if r.fs.isSet("etcd") || r.fs.isSet("advertise") {
			return &configError{"--etcd/--advertise", "given without --cluster NAME"}
		}
		return nil
	}
	c.LeaseTTL = proxyhealth.DefaultLeaseTTL
	switch {
	case r.fs.isSet("lease-ttl"):
		c.LeaseTTL = r.leaseTTL
	case fc.Cluster.LeaseTTL != nil:
		c.LeaseTTL = time.Duration(*fc.Cluster.LeaseTTL)
	}
	if len(c.Etcd) == 0 {
		return &configError{"--cluster " + c.Name, "needs the etcd endpoints: --etcd HOST:PORT[,HOST:PORT…] (or cluster.etcd in the config file)"}
	}
	if c.Advertise == "" {
		return &configError{"--cluster " + c.Name, "needs this member's address: --advertise HOST:PORT (or cluster.advertise), which the other members reach"}
	}
	if _, _, err := net.SplitHostPort(c.Advertise); err != nil {
		return &configError{"--advertise", fmt.Sprintf("%s: want HOST:PORT", short(c.Advertise))}
	}
	if c.LeaseTTL < time.Second {
		return &configError{"--lease-ttl", fmt.Sprintf("%v: must be at least 1s", c.LeaseTTL)}
	}
	return nil
}
