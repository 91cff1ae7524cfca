package endpoint

import (
	"crypto/subtle"
	"encoding/base64"
	"strings"
)

// splitSession splits a proxy-auth username at the first SessionSeparator:
// "alice-session-abc" → ("alice", "abc"). Without the separator the key is
// "".
func splitSession(username string) (user, key string) {
	if i := strings.Index(username, SessionSeparator); i >= 0 {
		return username[:i], username[i+len(SessionSeparator):]
	}
	return username, ""
}

// authRequired tells whether clients must authenticate.
func (s *Server) authRequired() bool { return len(s.cfg.Users) > 0 }

// checkUser tells whether user/pass are accepted (always when no Users are
// configured). The comparison of passwords takes constant time.
func (s *Server) checkUser(user, pass string) bool {
	if !s.authRequired() {
		return true
	}
	want, ok := s.cfg.Users[user]
	eq := subtle.ConstantTimeCompare([]byte(want), []byte(pass)) == 1
	return ok && eq
}

// parseBasic decodes a "Basic base64(user:pass)" Proxy-Authorization.
func parseBasic(v string) (user, pass string, ok bool) {
	const prefix = "Basic "
	if len(v) < len(prefix) || !strings.EqualFold(v[:len(prefix)], prefix) {
		return "", "", false
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v[len(prefix):]))
	if err != nil {
		return "", "", false
	}
	user, pass, ok = strings.Cut(string(b), ":")
	return user, pass, ok
}
