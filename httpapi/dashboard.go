package httpapi

import (
	_ "embed"
	"net/http"
)

// dashboardHTML is the whole dashboard: one page with inline CSS and JS.
//
//go:embed dashboard/index.html
var dashboardHTML []byte

// dashboardCSP allows nothing but the page's own inline code and requests
// to this server: the dashboard loads no external assets.
const dashboardCSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// dashboard serves the page. It carries no data, so it is served without
// the token; the page sends the token with its API requests.
func (s *Server) dashboard(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", dashboardCSP)
	h.Set("Cache-Control", "no-cache")
	h.Set("Referrer-Policy", "no-referrer")
	_, _ = w.Write(dashboardHTML)
}
