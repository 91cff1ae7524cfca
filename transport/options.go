package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/proxyhealth/proxyhealth/rotation"
)

// ErrBadOptions is wrapped by Options.Validate's (and New's) errors.
var ErrBadOptions = errors.New("transport: bad options")

// The defaults Options.Validate and New apply to zero fields.
const (
	// DefaultMaxAttempts is how many proxies a request may try.
	DefaultMaxAttempts = 3
	// DefaultPerAttemptTimeout bounds one attempt, from the pick to the
	// response headers.
	DefaultPerAttemptTimeout = 30 * time.Second
	// DefaultMaxIdleConnsPerProxy is how many idle keep-alive connections
	// are kept per proxy and target.
	DefaultMaxIdleConnsPerProxy = 16
	// DefaultIdleConnTimeout closes a keep-alive connection idle this long.
	DefaultIdleConnTimeout = 90 * time.Second
	// DefaultMaxProxies is how many proxies keep a connection pool at once;
	// the least recently used pool is closed beyond it.
	DefaultMaxProxies = 256
)

// Options configure a Transport. The zero value is usable: every zero
// field means its default.
type Options struct {
	// Strategy picks among the usable proxies; "" means the engine's
	// default. rotation.Sticky needs Key.
	Strategy rotation.Strategy
	// Key returns a request's sticky key (rotation.Sticky: requests
	// with the same key keep their proxy while it stays usable), e.g. the
	// target host or a session cookie. Required with Sticky, ignored
	// otherwise.
	Key func(*http.Request) string
	// Source, Scheme and Tag filter the proxies to pick from; "" matches
	// all.
	Source, Scheme, Tag string

	// MaxAttempts is how many proxies one request may try (default 3; 1
	// means no retries). See Transport for which requests are retried.
	MaxAttempts int
	// PerAttemptTimeout bounds one attempt from the dial to the response
	// headers (default 30 s); the body is bounded by the request's context
	// only. An attempt that runs out counts as a timeout against its
	// proxy.
	PerAttemptTimeout time.Duration

	// MaxIdleConnsPerProxy is how many idle keep-alive connections are kept
	// per proxy (and, for tunnels, per target) (default 16).
	MaxIdleConnsPerProxy int
	// MaxConnsPerProxy limits the connections per proxy (and, for tunnels,
	// per target), dialing, active and idle; 0 means no limit.
	MaxConnsPerProxy int
	// IdleConnTimeout closes keep-alive connections idle this long
	// (default 90 s).
	IdleConnTimeout time.Duration
	// MaxProxies is how many proxies keep a connection pool at once
	// (default 256): beyond it the least recently used proxy's idle
	// connections are closed and its pool dropped.
	MaxProxies int

	// TLSClientConfig is the TLS configuration for https:// targets; nil
	// means the system roots.
	TLSClientConfig *tls.Config
	// ProxyTLSConfig is the TLS configuration for https:// proxies; nil
	// means the system roots.
	ProxyTLSConfig *tls.Config
}

// Validate reports the first field that cannot work, wrapping
// ErrBadOptions.
func (o Options) Validate() error {
	if o.Strategy != "" {
		if !slices.Contains(rotation.Strategies, o.Strategy) {
			return fmt.Errorf("%w: Strategy %q is unknown: want one of %v or empty for the engine's default", ErrBadOptions, o.Strategy, rotation.Strategies)
		}
	}
	if o.Strategy == rotation.Sticky && o.Key == nil {
		return fmt.Errorf("%w: Strategy %q needs Key, the function that returns a request's sticky key", ErrBadOptions, o.Strategy)
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"MaxAttempts", int64(o.MaxAttempts)},
		{"PerAttemptTimeout", int64(o.PerAttemptTimeout)},
		{"MaxIdleConnsPerProxy", int64(o.MaxIdleConnsPerProxy)},
		{"MaxConnsPerProxy", int64(o.MaxConnsPerProxy)},
		{"IdleConnTimeout", int64(o.IdleConnTimeout)},
		{"MaxProxies", int64(o.MaxProxies)},
	} {
		if f.v < 0 {
			return fmt.Errorf("%w: %s is negative (%d): use 0 for the default", ErrBadOptions, f.name, f.v)
		}
	}
	return nil
}

// withDefaults fills the zero fields.
func (o Options) withDefaults() Options {
	if o.MaxAttempts == 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.PerAttemptTimeout == 0 {
		o.PerAttemptTimeout = DefaultPerAttemptTimeout
	}
	if o.MaxIdleConnsPerProxy == 0 {
		o.MaxIdleConnsPerProxy = DefaultMaxIdleConnsPerProxy
	}
	if o.IdleConnTimeout == 0 {
		o.IdleConnTimeout = DefaultIdleConnTimeout
	}
	if o.MaxProxies == 0 {
		o.MaxProxies = DefaultMaxProxies
	}
	return o
}
