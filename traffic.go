package proxyhealth

import (
	"github.com/proxyhealth/proxyhealth/endpoint"
	"github.com/proxyhealth/proxyhealth/transport"
)

// The two ways traffic goes through the pool, reached through the facade:
// an http.RoundTripper for Go programs (NewTransport) and the rotating
// proxy endpoint for any client (NewEndpoint). Both pick through the
// engine and report every attempt's outcome to it (ReportOutcome).
type (
	// Transport is an http.RoundTripper that sends each request through
	// a proxy the engine picks, retrying on another one (see package
	// transport).
	Transport = transport.Transport
	// TransportOptions configures a Transport; the zero value uses the
	// engine's default strategy.
	TransportOptions = transport.Options
	// Endpoint is the rotating proxy endpoint: an HTTP (forward and
	// CONNECT) and SOCKS4/5 proxy on one port whose upstream is the
	// proxy the engine picks (see package endpoint).
	Endpoint = endpoint.Server
	// EndpointConfig configures an Endpoint; the zero value serves on
	// loopback (endpoint.DefaultAddr) with round-robin.
	EndpointConfig = endpoint.Config
	// EndpointStats are an Endpoint's counters.
	EndpointStats = endpoint.Stats
)

// NewTransport returns a Transport that picks through e. Close it when
// done (it closes its idle connections).
func NewTransport(e *Engine, o TransportOptions) (*Transport, error) {
	return transport.New(e, o)
}

// NewEndpoint returns an Endpoint that picks through e; start it with
// ListenAndServe or Serve, stop it with Shutdown or Close.
func NewEndpoint(e *Engine, cfg EndpointConfig) (*Endpoint, error) {
	return endpoint.New(e, cfg)
}
