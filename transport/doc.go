// Package transport sends HTTP traffic through the proxies the engine
// hands out. Programs reach it through the facade (proxyhealth.NewTransport,
// proxyhealth.TransportOptions); it sees only the pool's types (rotation).
//
// Transport is an http.RoundTripper: each request goes through a proxy the
// engine picks (Engine.Pick, with the strategy and filters of Options),
// over a keep-alive connection pool per proxy; a request that fails at the
// connection level is retried on another proxy when that is safe
// (idempotent, or nothing was sent), and every attempt's outcome goes back
// to the engine (Engine.ReportOutcome) for passive outlier detection:
//
//	tr, err := proxyhealth.NewTransport(engine, proxyhealth.TransportOptions{Strategy: proxyhealth.LeastLatency})
//	if err != nil {
//		return err
//	}
//	defer tr.Close()
//	client := &http.Client{Transport: tr, Timeout: time.Minute}
//	resp, err := client.Get("https://example.com/")
//
// DialThrough (and Dialer.DialThrough) opens a TCP connection to a target
// through one upstream proxy: HTTP CONNECT (http://), CONNECT inside TLS to
// the proxy (https://), SOCKS5 (socks5://, socks5h://) and SOCKS4
// (socks4://, socks4a://), with the credentials of the proxy URL's
// userinfo. Its failures are *DialError values whose Class is one of the
// probe's failure-class names (Classify).
//
// Nothing this package returns or reports (errors, outcomes) contains a
// proxy's credentials, nor a request's path or query. It does not log.
package transport
