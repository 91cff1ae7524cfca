package fakeproxy

import (
	"fmt"
	"strings"
	"time"
)

type kind uint8

const (
	kindOK kind = iota
	kindRefuse
	kindBlackhole
	kindFlaky
	kindStatus
	kindWrongContent
	kindReset
	kindGarbage
)

// Behavior is what a fake proxy does with the connections it accepts. Build
// one with OK, Refuse, Blackhole, Slow, Flaky, Status, AuthRequired,
// WrongContent, Reset or Garbage, and refine it with the chainable
// modifiers (Delay, RequireAuth, Chunked, Trickle, Interim). Behaviors are
// small values; the zero value is OK().
type Behavior struct {
	kind    kind
	code    int
	p       float64
	delay   time.Duration
	auth    bool
	chunked bool
	trickle bool
	interim bool
}

// OK answers every request successfully: HTTP absolute-form requests get
// 200 with the farm's body, CONNECT and SOCKS tunnels are granted and the
// tunnelled request (TLS or not) gets the same 200.
func OK() Behavior { return Behavior{} }

// Refuse closes the proxy's listener, so connections are refused by the
// kernel. Switching to any other behavior re-opens it on the same port.
func Refuse() Behavior { return Behavior{kind: kindRefuse} }

// Blackhole accepts connections and reads from them but never answers,
// until the client or the farm closes them.
func Blackhole() Behavior { return Behavior{kind: kindBlackhole} }

// Slow is OK delayed by d before the first answer (the HTTP response, the
// CONNECT reply or the SOCKS method selection).
func Slow(d time.Duration) Behavior { return Behavior{delay: d} }

// Flaky fails each connection with probability p (half the failures are a
// TCP reset at accept, half a 502 or SOCKS failure reply at the first
// answer) and is otherwise OK. Use WithSeed for reproducible sequences.
func Flaky(p float64) Behavior { return Behavior{kind: kindFlaky, p: p} }

// Status is OK except that the final (target) response has status code.
func Status(code int) Behavior { return Behavior{kind: kindStatus, code: code} }

// AuthRequired is OK().RequireAuth(): requests without the proxy's
// credentials get 407 (HTTP), are refused at authentication (SOCKS5) or
// rejected with 0x5d (SOCKS4, which checks the user ID only). A proxy
// without credentials (see WithCredentials, SetCredentials) rejects
// everyone.
func AuthRequired() Behavior { return Behavior{auth: true} }

// WrongContent is OK with a body that differs from the farm's body
// ("fakeproxy: wrong content"), so body-pattern checks fail.
func WrongContent() Behavior { return Behavior{kind: kindWrongContent} }

// Reset accepts connections and immediately resets them (SO_LINGER 0 and
// close, which sends a TCP RST).
func Reset() Behavior { return Behavior{kind: kindReset} }

// Garbage reads the first request and answers with bytes that are neither
// HTTP nor SOCKS ("SSH-2.0-garbage..."), then closes.
func Garbage() Behavior { return Behavior{kind: kindGarbage} }

// Delay returns b with a delay of d before the first answer.
func (b Behavior) Delay(d time.Duration) Behavior { b.delay = d; return b }

// RequireAuth returns b requiring the proxy's credentials.
func (b Behavior) RequireAuth() Behavior { b.auth = true; return b }

// Chunked returns b sending final response bodies with chunked transfer
// encoding (one chunk per byte).
func (b Behavior) Chunked() Behavior { b.chunked = true; return b }

// Trickle returns b writing final responses one byte per write call, to
// exercise partial reads.
func (b Behavior) Trickle() Behavior { b.trickle = true; return b }

// Interim returns b sending a "100 Continue" interim response before the
// final response.
func (b Behavior) Interim() Behavior { b.interim = true; return b }

// String describes b, e.g. "Status(503)+Chunked".
func (b Behavior) String() string {
	var s string
	switch b.kind {
	case kindOK:
		s = "OK"
	case kindRefuse:
		s = "Refuse"
	case kindBlackhole:
		s = "Blackhole"
	case kindFlaky:
		s = fmt.Sprintf("Flaky(%g)", b.p)
	case kindStatus:
		s = fmt.Sprintf("Status(%d)", b.code)
	case kindWrongContent:
		s = "WrongContent"
	case kindReset:
		s = "Reset"
	case kindGarbage:
		s = "Garbage"
	default:
		s = fmt.Sprintf("kind(%d)", b.kind)
	}
	var mods []string
	if b.delay > 0 {
		mods = append(mods, fmt.Sprintf("Delay(%v)", b.delay))
	}
	if b.auth {
		mods = append(mods, "RequireAuth")
	}
	if b.chunked {
		mods = append(mods, "Chunked")
	}
	if b.trickle {
		mods = append(mods, "Trickle")
	}
	if b.interim {
		mods = append(mods, "Interim")
	}
	if len(mods) > 0 {
		s += "+" + strings.Join(mods, "+")
	}
	return s
}
