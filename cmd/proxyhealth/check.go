package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/proxyhealth/proxyhealth"
)

const checkUsage = `Usage: proxyhealth check URL [flags]

Checks one proxy once, right now, the way the daemon does: connects to the
proxy, fetches --check-url through it and classifies the result. Prints the
result with the latency breakdown (connect = dial and proxy handshakes,
first byte = request written to first response byte, total). The URL may
carry user:pass@; it is never printed.

Exit status: 0 when the check passed, 1 when it failed, 2 on bad usage.`

const checkExamples = `  proxyhealth check 10.0.0.7:3128
  proxyhealth check socks5h://user:pass@10.0.0.8:1080 --check-url https://example.com/ --timeout 3s
  proxyhealth check http://10.0.0.9:8080 --expected-status 200-299,301 --latency-ceiling 800ms --format json`

// checkOutput is the JSON form of a check result.
type checkOutput struct {
	Proxy       string  `json:"proxy"`
	ID          string  `json:"id"`
	Target      string  `json:"target"`
	Method      string  `json:"method"`
	OK          bool    `json:"ok"`
	ErrorClass  string  `json:"error_class,omitempty"`
	Message     string  `json:"message,omitempty"`
	StatusCode  int     `json:"status_code,omitempty"`
	ConnectMS   float64 `json:"connect_ms"`
	FirstByteMS float64 `json:"first_byte_ms"`
	LatencyMS   float64 `json:"latency_ms"`
}

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("check", checkUsage, checkExamples, stdout, stderr)
	checkURL := fs.String("check-url", proxyhealth.DefaultTargetURL, "`URL` fetched through the proxy (http or https)")
	timeout := proxyhealth.DefaultTimeout
	fs.Var(durationFlag{&timeout}, "timeout", "`DURATION` of the whole check")
	method := fs.String("method", "", "HEAD or GET (default HEAD, GET with --body-pattern)")
	expected := fs.String("expected-status", "200-299", "status `CODES` that pass, e.g. 200-299,301")
	bodyPattern := fs.String("body-pattern", "", "`REGEXP` the response body must match")
	var ceiling time.Duration
	fs.Var(durationFlag{&ceiling}, "latency-ceiling", "a passing check slower than this `DURATION` fails as too_slow (default: no ceiling)")
	mode := fs.String("mode", "auto", "auto (speak the proxy's protocol) or tcp-connect (only connect)")
	caFile := fs.String("ca-file", "", "PEM `FILE` of CA certificates trusted for https proxies and targets (default: the system's)")
	insecure := fs.Bool("insecure", false, "do not verify TLS certificates")
	format := newChoice("text", "text", "json")
	fs.Var(format, "format", "output `FORMAT`: text or json")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		if len(pos) == 0 {
			return fs.fail("missing the proxy URL")
		}
		return fs.fail("want one proxy URL, got %d arguments", len(pos))
	}
	// The URL first: its error is the one to show when both are wrong.
	if _, err := proxyhealth.ParseProxy(pos[0]); err != nil {
		return fs.fail("%s", proxyURLError(err))
	}
	cfg := proxyhealth.ProbeConfig{TargetURL: *checkURL, Method: *method, BodyPattern: *bodyPattern, LatencyCeiling: ceiling, Timeout: timeout}
	var err error
	if cfg.ExpectedStatus, err = proxyhealth.ParseStatusRanges(*expected); err != nil {
		return fs.fail("--expected-status: %v", err)
	}
	if cfg.Mode, err = proxyhealth.ParseProbeMode(*mode); err != nil {
		return fs.fail("--mode: %v", err)
	}
	if *caFile != "" || *insecure {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: *insecure}
		if *caFile != "" {
			pem, err := os.ReadFile(*caFile)
			if err != nil {
				return fs.fail("--ca-file: %v", unwrapPathError(err))
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return fs.fail("--ca-file %s: no PEM certificate found", *caFile)
			}
		}
		cfg.TLSConfig = tc
	}
	r, err := proxyhealth.CheckProxy(ctx, pos[0], cfg)
	if err != nil {
		return fs.fail("%s", proxyURLError(err))
	}
	if r.Canceled {
		fmt.Fprintln(stderr, "proxyhealth check: interrupted")
		return exitFailure
	}
	out := checkOutput{
		Proxy: r.Proxy.Redacted, ID: r.Proxy.ID, Target: r.Config.TargetURL, Method: r.Config.Method, OK: r.OK,
		ErrorClass: r.Class, Message: r.Message, StatusCode: r.StatusCode,
		ConnectMS: msOf(r.Connect), FirstByteMS: msOf(r.FirstByte), LatencyMS: msOf(r.Total),
	}
	if format.value == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	} else {
		fmt.Fprintf(stdout, "proxy    %s (id %s)\n", out.Proxy, out.ID)
		fmt.Fprintf(stdout, "target   %s %s\n", out.Method, out.Target)
		if out.OK {
			fmt.Fprintf(stdout, "result   ok, status %d\n", out.StatusCode)
		} else {
			status := ""
			if out.StatusCode != 0 {
				status = fmt.Sprintf(", status %d", out.StatusCode)
			}
			fmt.Fprintf(stdout, "result   FAILED: %s%s: %s\n", out.ErrorClass, status, out.Message)
		}
		fmt.Fprintf(stdout, "latency  connect %s · first byte %s · total %s\n", fmtMS(out.ConnectMS), fmtMS(out.FirstByteMS), fmtMS(out.LatencyMS))
	}
	if !out.OK {
		return exitFailure
	}
	return exitOK
}

// msOf converts a duration to milliseconds, to the microsecond.
func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// fmtMS formats milliseconds for people.
func fmtMS(ms float64) string {
	switch {
	case ms <= 0:
		return "0 ms"
	case ms < 10:
		return fmt.Sprintf("%.2f ms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.0f ms", ms)
	default:
		return fmt.Sprintf("%.2f s", ms/1000)
	}
}
