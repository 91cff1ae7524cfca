package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/proxyhealth/proxyhealth"
)

// Defaults of the daemon (the engine's defaults are documented in
// proxyhealth.DefaultHealthConfig and proxyhealth.ProbeConfig).
const (
	defaultData   = "./proxyhealth-data"
	defaultListen = "127.0.0.1:9480"
)

// fileConfig is the YAML config file (see testdata/example.yaml for every
// field, documented with its default). Pointers are nil when the file does
// not set the field, so that an explicit zero can be refused.
type fileConfig struct {
	Data            *string       `yaml:"data"`
	Listen          *string       `yaml:"listen"`
	Concurrency     *int          `yaml:"concurrency"`
	Retention       *duration     `yaml:"retention"`
	CheckpointEvery *duration     `yaml:"checkpoint_every"`
	LogFormat       *string       `yaml:"log_format"`
	Defaults        checkSettings `yaml:"defaults"`
	Sources         []sourceFile  `yaml:"sources"`
	Webhooks        []webhookFile `yaml:"webhooks"`
	Pool            poolFile      `yaml:"pool"`
	Serve           serveFile     `yaml:"serve"`
	Cluster         clusterFile   `yaml:"cluster"`

	// path is the file's name; lines maps the path of every key and list
	// item ("retention", "sources[1].interval", "sources[1].proxies[0]")
	// to its line.
	path  string
	lines map[string]int
}

// where returns "FILE:LINE" of a key path, or "FILE" when the line is not
// known.
func (fc *fileConfig) where(key string) string {
	if l, ok := fc.lines[key]; ok {
		return fmt.Sprintf("%s:%d", fc.path, l)
	}
	return fc.path
}

// sourceFile is one source of the config file.
type sourceFile struct {
	Name          string `yaml:"name"`
	checkSettings `yaml:",inline"`
	Proxies       []lineString `yaml:"proxies"`
	ProxyFiles    []string     `yaml:"proxy_files"`
	// Tags are given to every proxy of the source; Weight is the weight of
	// those whose list line gives none.
	Tags   []string `yaml:"tags"`
	Weight *float64 `yaml:"weight"`
	// URL is a provider's proxy list, File a watched list file; Refresh,
	// ShrinkGuard, Grace, ConfirmAfter and Headers (NAME_env: from the
	// environment) how it is followed (proxyhealth.SourceList).
	URL          *string           `yaml:"url"`
	File         *string           `yaml:"file"`
	Refresh      *duration         `yaml:"refresh"`
	ShrinkGuard  *float64          `yaml:"shrink_guard"`
	Grace        *int              `yaml:"grace"`
	ConfirmAfter *int              `yaml:"confirm_after"`
	ListHeaders  map[string]string `yaml:"list_headers"`
}

// webhookFile is one webhook of the config file. The URL and the secret
// may hold credentials: no error or log shows more of the URL than
// scheme://host, nor anything of the secret.
type webhookFile struct {
	URL       *string   `yaml:"url"`
	Events    []string  `yaml:"events"`
	Secret    *string   `yaml:"secret"`
	SecretEnv *string   `yaml:"secret_env"`
	Timeout   *duration `yaml:"timeout"`
}

// poolFile is the pool monitor's section of the config file.
// serveFile is the rotating endpoint's section of the config file.
type serveFile struct {
	// Listen is the endpoint's address (--serve); none: no endpoint.
	Listen *string `yaml:"listen"`
	// Strategy picks the upstream of each request (--strategy).
	Strategy *string `yaml:"strategy"`
	// IncludeDegraded, PanicThreshold, DisablePanic, MaxEjectionShare:
	// proxyhealth.RotationConfig.
	IncludeDegraded  *bool    `yaml:"include_degraded"`
	PanicThreshold   *float64 `yaml:"panic_threshold"`
	DisablePanic     *bool    `yaml:"disable_panic"`
	MaxEjectionShare *float64 `yaml:"max_ejection_share"`
	// Users may use the endpoint (Proxy-Authorization, SOCKS5 user/pass);
	// required when listen is not a loopback address.
	Users []serveUser `yaml:"users"`
}

// serveUser is one user of the rotating endpoint. The password comes from
// the environment (password_env) or the file (password).
type serveUser struct {
	Name        string  `yaml:"name"`
	Password    *string `yaml:"password"`
	PasswordEnv *string `yaml:"password_env"`
}

type poolFile struct {
	DegradedThreshold *float64 `yaml:"degraded_threshold"`
	RecoveryMargin    *float64 `yaml:"recovery_margin"`
}

// checkSettings are the per-source check settings; nil means "not set
// here" (the next layer down applies: defaults, then built-ins).
type checkSettings struct {
	Interval                *duration         `yaml:"interval"`
	Jitter                  *float64          `yaml:"jitter"`
	SuspectInterval         *duration         `yaml:"suspect_interval"`
	Timeout                 *duration         `yaml:"timeout"`
	CheckURL                *string           `yaml:"check_url"`
	EchoURL                 *string           `yaml:"echo_url"`
	Method                  *string           `yaml:"method"`
	ExpectedStatus          *string           `yaml:"expected_status"`
	BodyPattern             *string           `yaml:"body_pattern"`
	LatencyCeiling          *duration         `yaml:"latency_ceiling"`
	Mode                    *string           `yaml:"mode"`
	Close                   *string           `yaml:"close"`
	SourceIP                *string           `yaml:"source_ip"`
	Headers                 map[string]string `yaml:"headers"`
	CAFile                  *string           `yaml:"ca_file"`
	InsecureSkipVerify      *bool             `yaml:"insecure_skip_verify"`
	HealthyThreshold        *int              `yaml:"healthy_threshold"`
	UnhealthyThreshold      *int              `yaml:"unhealthy_threshold"`
	FirstSuccessHealthy     *bool             `yaml:"first_success_healthy"`
	RecoveryCooldown        *duration         `yaml:"recovery_cooldown"`
	MaxRecoveryCooldown     *duration         `yaml:"max_recovery_cooldown"`
	MaxRecoveryAttempts     *int              `yaml:"max_recovery_attempts"`
	PassiveFailureThreshold *int              `yaml:"passive_failure_threshold"`
	EjectionTime            *duration         `yaml:"ejection_time"`
	MaxEjectionTime         *duration         `yaml:"max_ejection_time"`
}

// maxCount bounds the thresholds and max_recovery_attempts.
const maxCount = 1 << 20

// settingsLayer is one layer of check settings (the file's defaults, a
// source, the command line) and how its errors name a field.
type settingsLayer struct {
	s *checkSettings
	// fc and prefix ("defaults.", "sources[1].") name the fields of a
	// config file; with fc nil the layer is the command line and a field
	// is named after its flag (--interval).
	fc     *fileConfig
	prefix string
}

// errorf is the error of a field: "FILE:LINE: sources[1].interval 10ms:
// must be at least 100ms", or "--interval: 10ms: must be at least 100ms".
func (l settingsLayer) errorf(field string, value any, rule string) error {
	v := ""
	if value != nil {
		v = fmt.Sprint(value)
	}
	if l.fc == nil {
		return &configError{"--" + strings.ReplaceAll(field, "_", "-"), strings.TrimPrefix(v+": "+rule, ": ")}
	}
	return &configError{l.fc.where(l.prefix + field), strings.TrimSpace(l.prefix+field+" "+v) + ": " + rule}
}

// validate checks every field the layer sets against its accepted range
// (what HealthConfig.Validate and ProbeConfig.Validate accept, without
// the engine's silent defaults for zero values). Settings that depend on
// each other are checked once the layers are merged (checkMerged).
func (l settingsLayer) validate() error {
	s := l.s
	for _, d := range []struct {
		field string
		v     *duration
		min   time.Duration
		rule  string
	}{
		{"interval", s.Interval, proxyhealth.MinInterval, "must be at least " + duration(proxyhealth.MinInterval).String()},
		{"suspect_interval", s.SuspectInterval, proxyhealth.MinInterval, "must be at least " + duration(proxyhealth.MinInterval).String()},
		{"timeout", s.Timeout, time.Nanosecond, "must be more than 0s (e.g. 5s)"},
		{"latency_ceiling", s.LatencyCeiling, 0, "must be 0s (no ceiling) or more"},
		{"recovery_cooldown", s.RecoveryCooldown, time.Nanosecond, "must be more than 0s (e.g. 1m)"},
		{"max_recovery_cooldown", s.MaxRecoveryCooldown, time.Nanosecond, "must be more than 0s (e.g. 1h)"},
		{"ejection_time", s.EjectionTime, proxyhealth.MinInterval, "must be at least " + duration(proxyhealth.MinInterval).String() + " (e.g. 30s)"},
		{"max_ejection_time", s.MaxEjectionTime, proxyhealth.MinInterval, "must be at least " + duration(proxyhealth.MinInterval).String() + " (e.g. 5m)"},
	} {
		if d.v != nil && time.Duration(*d.v) < d.min {
			return l.errorf(d.field, *d.v, d.rule)
		}
	}
	if s.Jitter != nil && !(*s.Jitter >= 0 && *s.Jitter <= 0.5) { // also refuses NaN
		return l.errorf("jitter", *s.Jitter, "must be between 0 and 0.5")
	}
	for _, n := range []struct {
		field string
		v     *int
		min   int
	}{
		{"healthy_threshold", s.HealthyThreshold, 1}, {"unhealthy_threshold", s.UnhealthyThreshold, 1},
		{"max_recovery_attempts", s.MaxRecoveryAttempts, 0}, {"passive_failure_threshold", s.PassiveFailureThreshold, 1},
	} {
		if n.v != nil && (*n.v < n.min || *n.v > maxCount) {
			rule := fmt.Sprintf("must be between %d and %d", n.min, maxCount)
			if n.min == 0 {
				rule += " (0 = never give up)"
			}
			return l.errorf(n.field, *n.v, rule)
		}
	}
	if s.CheckURL != nil && (*s.CheckURL == "" || (proxyhealth.ProbeConfig{TargetURL: *s.CheckURL}).Validate() != nil) {
		// The URL is not shown: it may carry credentials.
		return l.errorf("check_url", "(not shown)", "want an absolute http or https URL without credentials or fragment, e.g. "+proxyhealth.DefaultTargetURL)
	}
	if s.EchoURL != nil && *s.EchoURL != "" && (proxyhealth.ProbeConfig{TargetURL: proxyhealth.DefaultTargetURL, EchoURL: *s.EchoURL}).Validate() != nil {
		// The URL is not shown: it may carry credentials.
		return l.errorf("echo_url", "(not shown)", `want an absolute http or https URL without credentials of an echo target answering like httpbin's /get ({"origin": IP, "headers": {...}}), or "" for none`)
	}
	if s.Method != nil {
		if m := strings.ToUpper(strings.TrimSpace(*s.Method)); m != "HEAD" && m != "GET" {
			return l.errorf("method", short(*s.Method), "want HEAD or GET")
		}
	}
	if s.ExpectedStatus != nil {
		if _, err := proxyhealth.ParseStatusRanges(*s.ExpectedStatus); err != nil {
			return l.errorf("expected_status", short(*s.ExpectedStatus), "want status codes or inclusive ranges from 100 to 599, like 200-299,301")
		}
	}
	if s.Mode != nil {
		if _, err := proxyhealth.ParseProbeMode(*s.Mode); err != nil || strings.TrimSpace(*s.Mode) == "" {
			return l.errorf("mode", short(*s.Mode), "want auto or tcp-connect")
		}
	}
	if s.Close != nil {
		if _, err := proxyhealth.ParseProbeClose(*s.Close); err != nil || strings.TrimSpace(*s.Close) == "" {
			return l.errorf("close", short(*s.Close), "want auto, fin or reset")
		}
	}
	if s.SourceIP != nil && strings.TrimSpace(*s.SourceIP) != "" {
		ip, err := netip.ParseAddr(strings.TrimSpace(*s.SourceIP))
		if err == nil {
			err = proxyhealth.ProbeConfig{SourceIP: ip}.Validate()
		}
		if err != nil {
			return l.errorf("source_ip", short(*s.SourceIP), `want one IP address of this host (e.g. 127.0.0.2), not 0.0.0.0, :: or multicast, or "" for the kernel's choice`)
		}
	}
	if s.BodyPattern != nil {
		if _, err := regexp.Compile(*s.BodyPattern); err != nil {
			return l.errorf("body_pattern", short(*s.BodyPattern), "not a valid regular expression (Go syntax): "+strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		}
	}
	if len(s.Headers) > 0 {
		var p proxyhealth.ProbeConfig
		s.applyHeaders(&p)
		if err := p.Validate(); err != nil {
			return l.errorf("headers", nil, strings.TrimPrefix(err.Error(), proxyhealth.ErrBadProbeConfig.Error()+": Headers "))
		}
	}
	if s.CAFile != nil && *s.CAFile == "" {
		return l.errorf("ca_file", `""`, "want the path of a PEM file")
	}
	return nil
}

// short quotes a value of the config file for an error, cut to 40
// characters.
func short(s string) string {
	if r := []rune(s); len(r) > 40 {
		s = string(r[:39]) + "…"
	}
	return strconv.Quote(s)
}

// applyHeaders sets p.Headers from s.Headers, sorted by name.
func (s *checkSettings) applyHeaders(p *proxyhealth.ProbeConfig) {
	names := make([]string, 0, len(s.Headers))
	for n := range s.Headers {
		names = append(names, n)
	}
	slices.Sort(names)
	p.Headers = nil
	for _, n := range names {
		p.Headers = append(p.Headers, proxyhealth.ProbeHeader{Name: n, Value: s.Headers[n]})
	}
}

// apply sets the fields of c that are set in s, which validate accepted.
// base is the directory relative file names (ca_file) are resolved
// against.
func (s *checkSettings) apply(h *proxyhealth.HealthConfig, p *proxyhealth.ProbeConfig, base string) error {
	set := func(dst *time.Duration, v *duration) {
		if v != nil {
			*dst = time.Duration(*v)
		}
	}
	set(&h.Interval, s.Interval)
	set(&h.SuspectInterval, s.SuspectInterval)
	set(&p.Timeout, s.Timeout)
	set(&p.LatencyCeiling, s.LatencyCeiling)
	set(&h.RecoveryCooldown, s.RecoveryCooldown)
	set(&h.MaxRecoveryCooldown, s.MaxRecoveryCooldown)
	set(&h.EjectionTime, s.EjectionTime)
	set(&h.MaxEjectionTime, s.MaxEjectionTime)
	if s.Jitter != nil {
		h.Jitter = *s.Jitter
	}
	for _, u := range []struct {
		dst *uint32
		v   *int
	}{{&h.HealthyThreshold, s.HealthyThreshold}, {&h.UnhealthyThreshold, s.UnhealthyThreshold},
		{&h.MaxRecoveryAttempts, s.MaxRecoveryAttempts}, {&h.PassiveFailureThreshold, s.PassiveFailureThreshold}} {
		if u.v != nil && *u.v >= 0 && *u.v <= maxCount {
			*u.dst = uint32(*u.v)
		}
	}
	if s.FirstSuccessHealthy != nil {
		h.FirstSuccessHealthy = *s.FirstSuccessHealthy
	}
	if s.CheckURL != nil {
		p.TargetURL = *s.CheckURL
	}
	if s.EchoURL != nil {
		p.EchoURL = *s.EchoURL
	}
	if s.Method != nil {
		p.Method = *s.Method
	}
	if s.BodyPattern != nil {
		p.BodyPattern = *s.BodyPattern
	}
	if s.ExpectedStatus != nil {
		r, err := proxyhealth.ParseStatusRanges(*s.ExpectedStatus)
		if err != nil {
			return fmt.Errorf("expected_status: %w", err)
		}
		p.ExpectedStatus = r
	}
	if s.Mode != nil {
		m, err := proxyhealth.ParseProbeMode(*s.Mode)
		if err != nil {
			return fmt.Errorf("mode: %w", err)
		}
		p.Mode = m
	}
	if s.Close != nil {
		c, err := proxyhealth.ParseProbeClose(*s.Close)
		if err != nil {
			return fmt.Errorf("close: %w", err)
		}
		p.Close = c
	}
	if s.SourceIP != nil {
		p.SourceIP, _ = netip.ParseAddr(strings.TrimSpace(*s.SourceIP)) // validated; "" = the kernel's choice
	}
	if len(s.Headers) > 0 {
		s.applyHeaders(p)
	}
	if s.CAFile != nil || s.InsecureSkipVerify != nil {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if p.TLSConfig != nil {
			tc = p.TLSConfig.Clone()
		}
		if s.CAFile != nil {
			path := *s.CAFile
			if !filepath.IsAbs(path) {
				path = filepath.Join(base, path)
			}
			pem, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("ca_file: %w", unwrapPathError(err))
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("ca_file %s: no PEM certificate found", path)
			}
			tc.RootCAs = pool
		}
		if s.InsecureSkipVerify != nil {
			tc.InsecureSkipVerify = *s.InsecureSkipVerify
		}
		p.TLSConfig = tc
	}
	return nil
}

// duration is a time.Duration in YAML and flags, written like "30s",
// "500ms", "1h30m" or "7d".
type duration time.Duration

var daysRE = regexp.MustCompile(`^(\d+)d$`)

func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if m := daysRE.FindStringSubmatch(s); m != nil {
		n, err := strconv.Atoi(m[1])
		if err == nil && n <= 365*100 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s is not a duration (e.g. 500ms, 30s, 5m, 7d)", short(s))
	}
	return d, nil
}

// UnmarshalYAML parses a duration string.
func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseDuration(n.Value)
	if err != nil {
		return &yamlLineError{line: n.Line, msg: err.Error()}
	}
	*d = duration(v)
	return nil
}

// String formats the duration, in days when whole.
func (d duration) String() string {
	t := time.Duration(d)
	if t >= 24*time.Hour && t%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", t/(24*time.Hour))
	}
	return t.String()
}

// durationFlag is a flag.Value for durations (accepting "7d").
type durationFlag struct{ d *time.Duration }

func (f durationFlag) String() string {
	if f.d == nil || *f.d == 0 {
		return ""
	}
	return duration(*f.d).String()
}

func (f durationFlag) Set(s string) error {
	d, err := parseDuration(s)
	if err != nil {
		return err
	}
	if d < 0 {
		return fmt.Errorf("%q is negative", s)
	}
	*f.d = d
	return nil
}

// lineString is a YAML string that remembers its line.
type lineString struct {
	value string
	line  int
}

// UnmarshalYAML decodes the string and records its line.
func (l *lineString) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yamlLineError{line: n.Line, msg: "want a proxy URL string"}
	}
	l.value, l.line = n.Value, n.Line
	return nil
}

// yamlLineError is an error at a line of the config file.
type yamlLineError struct {
	line int
	msg  string
}

func (e *yamlLineError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

var (
	yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	// yamlTypeRE matches yaml's type errors, which quote the start of the
	// value: "cannot unmarshal !!str `hunter2` into int".
	yamlTypeRE = regexp.MustCompile("^cannot unmarshal !!(\\w+)(?: `.*`)? into (.+)$")
)

// yamlError turns a yaml error into "FILE:LINE: reason" (the first one),
// without the content of the file.
func (fc *fileConfig) yamlError(err error) error {
	var le *yamlLineError
	if errors.As(err, &le) {
		return &configError{fmt.Sprintf("%s:%d", fc.path, le.line), le.msg}
	}
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		err = errors.New(strings.TrimSpace(te.Errors[0]))
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	m := yamlLineRE.FindStringSubmatch(msg)
	if m == nil {
		return &configError{fc.path, msg}
	}
	where, reason := fc.path+":"+m[1], m[2]
	if t := yamlTypeRE.FindStringSubmatch(reason); t != nil {
		line, _ := strconv.Atoi(m[1])
		want, got := yamlKindOf(t[2]), yamlTagName(t[1])
		reason = fmt.Sprintf("want %s, not %s", want, got)
		switch {
		case want == got:
			reason = "number out of range"
		case want == "a whole number" && got == "a number":
			reason = "want a whole number (no fraction, not too large)"
		}
		if key := fc.keyAt(line); key != "" {
			reason = key + ": " + reason
		}
	}
	return &configError{where, strings.ReplaceAll(reason, "main.", "")}
}

// keyAt returns the key path whose key or value is on line ("" when none).
func (fc *fileConfig) keyAt(line int) string {
	best := ""
	for k, l := range fc.lines {
		// The longest path is the innermost key.
		if l == line && (len(k) > len(best) || len(k) == len(best) && k < best) {
			best = k
		}
	}
	return best
}

// yamlTagName names a YAML tag for an error.
func yamlTagName(tag string) string {
	switch tag {
	case "str":
		return "a string"
	case "int":
		return "a whole number"
	case "float":
		return "a number"
	case "bool":
		return "true or false"
	case "seq":
		return "a list"
	case "map":
		return "a mapping (key: value)"
	case "null":
		return "an empty value"
	}
	return "a " + tag
}

// yamlKindOf names what a Go type wants in YAML, for an error.
func yamlKindOf(goType string) string {
	t := strings.TrimPrefix(goType, "*")
	switch {
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["), strings.HasPrefix(t, "main."):
		return "a mapping (key: value)"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "a whole number"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	}
	return "a " + t
}

// readConfigFile reads and decodes the YAML config file. Unknown keys, at
// any level, are errors naming the key, its line and the closest known key.
func readConfigFile(path string) (*fileConfig, error) {
	fc := &fileConfig{path: path, lines: map[string]int{}}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, &configError{path, fmt.Sprintf("cannot read the config file: %v", unwrapPathError(err))}
	}
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(raw)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return fc, nil // an empty file
		}
		return nil, fc.yamlError(err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return fc, nil // only comments
	}
	if root.Kind != yaml.MappingNode {
		return nil, &configError{fmt.Sprintf("%s:%d", path, root.Line),
			"not a YAML mapping of settings (key: value lines); is this a proxyhealth config file? See testdata/example.yaml in the sources"}
	}
	if err := fc.checkKeys(root, reflect.TypeFor[fileConfig](), "", 0); err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(fc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fc.yamlError(err)
	}
	return fc, nil
}

var (
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	// keyLikeRE matches what may be shown of an unknown key.
	keyLikeRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,40}$`)
)

// checkKeys walks the YAML tree n, which decodes into a t, records the line
// of every key and list item in fc.lines, and refuses the first key t does
// not have.
func (fc *fileConfig) checkKeys(n *yaml.Node, t reflect.Type, path string, depth int) error {
	if depth > 64 {
		return &configError{fmt.Sprintf("%s:%d", fc.path, n.Line), "nested too deeply"}
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return nil
		}
		return fc.checkKeys(n.Alias, t, path, depth+1)
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil // a scalar type of ours (duration, lineString)
	}
	join := func(key string) string {
		if path == "" {
			return key
		}
		return path + "." + key
	}
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" && k.Tag == "!!merge" { // "<<: *defaults"
				merged := []*yaml.Node{v}
				if v.Kind == yaml.SequenceNode {
					merged = v.Content
				}
				for _, m := range merged {
					if err := fc.checkKeys(m, t, path, depth+1); err != nil {
						return err
					}
				}
				continue
			}
			ft, ok := fields[k.Value]
			if !ok {
				return fc.unknownKey(k, path, fields)
			}
			fc.lines[join(k.Value)] = k.Line
			if err := fc.checkKeys(v, ft, join(k.Value), depth+1); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := join(n.Content[i].Value)
			fc.lines[k] = n.Content[i].Line
			if err := fc.checkKeys(n.Content[i+1], t.Elem(), k, depth+1); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, c := range n.Content {
			k := fmt.Sprintf("%s[%d]", path, i)
			fc.lines[k] = c.Line
			if err := fc.checkKeys(c, t.Elem(), k, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// unknownKey is the error of a key the config file does not know.
func (fc *fileConfig) unknownKey(k *yaml.Node, path string, fields map[string]reflect.Type) error {
	where := "at the top level"
	if path != "" {
		where = "in " + path
	}
	if !keyLikeRE.MatchString(k.Value) {
		// Not shown: it may be a line of some other file.
		msg := "unknown key (not shown: not a setting name) " + where
		if path == "" {
			msg += "; is this a proxyhealth config file? See testdata/example.yaml in the sources"
		}
		return &configError{fmt.Sprintf("%s:%d", fc.path, k.Line), msg}
	}
	msg := fmt.Sprintf("unknown key %q %s", k.Value, where)
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	slices.Sort(names)
	if s := closest(k.Value, names); s != "" {
		msg += "; did you mean " + s + "?"
	} else {
		msg += "; known keys: " + strings.Join(names, ", ")
	}
	return &configError{fmt.Sprintf("%s:%d", fc.path, k.Line), msg}
}

// yamlFields maps the YAML keys of struct t (with its inline structs) to
// their types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for f := range t.Fields() {
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		switch {
		case opts == "inline":
			maps.Copy(out, yamlFields(f.Type))
		case name != "" && name != "-" && f.IsExported():
			out[name] = f.Type
		}
	}
	return out
}

// closest returns the known name nearest to key, or "" when none is near:
// at most a third of the key's length in edits (case, '-' and '_' aside).
func closest(key string, known []string) string {
	norm := func(s string) string { return strings.ReplaceAll(strings.ToLower(s), "-", "_") }
	best, bestD := "", len(key)/3+1
	for _, k := range known {
		if d := editDistance(norm(key), norm(k)); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	if len(a) > 256 || len(b) > 256 {
		return max(len(a), len(b))
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
