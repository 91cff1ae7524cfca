package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/probe"
)

// Defaults of the daemon (the engine's defaults are documented in
// events.DefaultConfig and probe.Config).
const (
	defaultData   = "./proxyhealth-data"
	defaultListen = "127.0.0.1:9480"
)

// fileConfig is the YAML config file (see testdata/example.yaml for every
// field, documented with its default).
type fileConfig struct {
	Data        string        `yaml:"data"`
	Listen      string        `yaml:"listen"`
	Concurrency int           `yaml:"concurrency"`
	Retention   *duration     `yaml:"retention"`
	LogFormat   string        `yaml:"log_format"`
	Defaults    checkSettings `yaml:"defaults"`
	Sources     []sourceFile  `yaml:"sources"`
}

// sourceFile is one source of the config file.
type sourceFile struct {
	Name          string `yaml:"name"`
	checkSettings `yaml:",inline"`
	Proxies       []lineString `yaml:"proxies"`
	ProxyFiles    []string     `yaml:"proxy_files"`
	line          int
}

// UnmarshalYAML records the line of the source.
func (s *sourceFile) UnmarshalYAML(n *yaml.Node) error {
	type plain sourceFile
	if err := n.Decode((*plain)(s)); err != nil {
		return err
	}
	s.line = n.Line
	return nil
}

// checkSettings are the per-source check settings; nil means "not set
// here" (the next layer down applies: defaults, then built-ins).
type checkSettings struct {
	Interval                *duration         `yaml:"interval"`
	Jitter                  *float64          `yaml:"jitter"`
	SuspectInterval         *duration         `yaml:"suspect_interval"`
	Timeout                 *duration         `yaml:"timeout"`
	CheckURL                *string           `yaml:"check_url"`
	Method                  *string           `yaml:"method"`
	ExpectedStatus          *string           `yaml:"expected_status"`
	BodyPattern             *string           `yaml:"body_pattern"`
	LatencyCeiling          *duration         `yaml:"latency_ceiling"`
	Mode                    *string           `yaml:"mode"`
	Headers                 map[string]string `yaml:"headers"`
	CAFile                  *string           `yaml:"ca_file"`
	InsecureSkipVerify      *bool             `yaml:"insecure_skip_verify"`
	HealthyThreshold        *uint32           `yaml:"healthy_threshold"`
	UnhealthyThreshold      *uint32           `yaml:"unhealthy_threshold"`
	FirstSuccessHealthy     *bool             `yaml:"first_success_healthy"`
	RecoveryCooldown        *duration         `yaml:"recovery_cooldown"`
	MaxRecoveryCooldown     *duration         `yaml:"max_recovery_cooldown"`
	MaxRecoveryAttempts     *uint32           `yaml:"max_recovery_attempts"`
	PassiveFailureThreshold *uint32           `yaml:"passive_failure_threshold"`
}

// apply sets the fields of c that are set in s. base is the directory
// relative file names (ca_file) are resolved against.
func (s *checkSettings) apply(h *events.Config, p *probe.Config, base string) error {
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
	if s.Jitter != nil {
		h.Jitter = *s.Jitter
	}
	for _, u := range []struct {
		dst *uint32
		v   *uint32
	}{{&h.HealthyThreshold, s.HealthyThreshold}, {&h.UnhealthyThreshold, s.UnhealthyThreshold},
		{&h.MaxRecoveryAttempts, s.MaxRecoveryAttempts}, {&h.PassiveFailureThreshold, s.PassiveFailureThreshold}} {
		if u.v != nil {
			*u.dst = *u.v
		}
	}
	if s.FirstSuccessHealthy != nil {
		h.FirstSuccessHealthy = *s.FirstSuccessHealthy
	}
	if s.CheckURL != nil {
		p.TargetURL = *s.CheckURL
	}
	if s.Method != nil {
		p.Method = *s.Method
	}
	if s.BodyPattern != nil {
		p.BodyPattern = *s.BodyPattern
	}
	if s.ExpectedStatus != nil {
		r, err := probe.ParseStatusRanges(*s.ExpectedStatus)
		if err != nil {
			return fmt.Errorf("expected_status: %w", err)
		}
		p.ExpectedStatus = r
	}
	if s.Mode != nil {
		m, err := probe.ParseMode(*s.Mode)
		if err != nil {
			return fmt.Errorf("mode: %w", err)
		}
		p.Mode = m
	}
	if len(s.Headers) > 0 {
		names := make([]string, 0, len(s.Headers))
		for n := range s.Headers {
			names = append(names, n)
		}
		slices.Sort(names)
		p.Headers = nil
		for _, n := range names {
			p.Headers = append(p.Headers, probe.Header{Name: n, Value: s.Headers[n]})
		}
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
		return 0, fmt.Errorf("%q is not a duration (e.g. 500ms, 30s, 5m, 7d)", s)
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

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlError turns a yaml error into "FILE:LINE: reason" (the first one).
func yamlError(path string, err error) error {
	var le *yamlLineError
	if errors.As(err, &le) {
		return &configError{fmt.Sprintf("%s:%d", path, le.line), le.msg}
	}
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		err = errors.New(strings.TrimSpace(te.Errors[0]))
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		return &configError{path + ":" + m[1], strings.ReplaceAll(m[2], "main.", "")}
	}
	return &configError{path, msg}
}

// readConfigFile reads and decodes the YAML config file. Unknown fields
// are errors.
func readConfigFile(path string) (*fileConfig, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, &configError{path, fmt.Sprintf("cannot read the config file: %v", unwrapPathError(err))}
	}
	var fc fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlError(path, err)
	}
	return &fc, nil
}
