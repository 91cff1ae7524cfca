package membership

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Defaults applied by Join to zero fields of Config.
const (
	DefaultTTL         = 2 * time.Second
	DefaultDialTimeout = 5 * time.Second
	DefaultPrefix      = "/proxyhealth/members/"
)

var (
	// ErrConfig is wrapped by every error of Config.Validate.
	ErrConfig = errors.New("membership: invalid config")
	// ErrEtcd is wrapped by errors talking to etcd (unreachable at Join,
	// a refused lease or registration).
	ErrEtcd = errors.New("membership: etcd")
	// ErrListen is returned by Join when the remote cannot listen on the
	// advertised address.
	ErrListen = errors.New("membership: cannot listen")
	// ErrLeaseExpired is wrapped by Err when etcd said the member's lease
	// no longer exists (it expired: the member was paused or cut off from
	// etcd longer than the TTL, or it was revoked).
	ErrLeaseExpired = errors.New("membership: lease expired")
	// ErrKeyDeleted is wrapped by Err when the member's own key vanished
	// from etcd (deleted by someone, or with its lease).
	ErrKeyDeleted = errors.New("membership: own key deleted")
	// ErrLeft is returned by Leave on a member stopped by Crash.
	ErrLeft = errors.New("membership: member has left")
)

// Config configures a member.
type Config struct {
	// Cluster names the cluster; members of one cluster use the same
	// name, and several clusters may share one etcd. No "/".
	Cluster string
	// Endpoints are the etcd client URLs, e.g. http://127.0.0.1:2379,
	// without credentials (etcd authentication is not supported).
	Endpoints []string
	// Advertise is the host:port the member binds and advertises to the
	// others (remote messages reach it there); port 0 binds any free
	// port. The host must be an address or name the other members reach:
	// not 0.0.0.0 or ::.
	Advertise string
	// TTL is the etcd lease's time to live, a whole number of seconds,
	// at least 1 s (0 = DefaultTTL). A member that cannot renew its lease
	// within the TTL is dropped by the others and fences itself (Fresh).
	TTL time.Duration
	// DialTimeout bounds Join's first connection to etcd (0 =
	// DefaultDialTimeout).
	DialTimeout time.Duration
	// Prefix is prepended to the cluster name in etcd keys (""=
	// DefaultPrefix); it ends with "/".
	Prefix string
	// Logger receives the membership's own logs and protoactor's (whose
	// INFO lines are lowered to DEBUG); nil = silent.
	Logger *slog.Logger
}

// Validate checks the config without touching the network.
func (c Config) Validate() error {
	if c.Cluster == "" {
		return fmt.Errorf("%w: Cluster is empty: name the cluster (every member of one cluster uses the same name)", ErrConfig)
	}
	if strings.ContainsAny(c.Cluster, "/\x00") {
		return fmt.Errorf("%w: Cluster %q contains \"/\": use a plain name", ErrConfig, c.Cluster)
	}
	if len(c.Endpoints) == 0 {
		return fmt.Errorf("%w: Endpoints is empty: give the etcd client URLs (e.g. http://127.0.0.1:2379)", ErrConfig)
	}
	for i, e := range c.Endpoints {
		if strings.TrimSpace(e) == "" {
			return fmt.Errorf("%w: Endpoints has an empty entry: give the etcd client URLs (e.g. http://127.0.0.1:2379)", ErrConfig)
		}
		if u, err := url.Parse(e); err == nil && u.User != nil {
			u.User = nil
			return fmt.Errorf("%w: Endpoints[%d] (%s) carries credentials: etcd authentication is not supported; give the URL without them", ErrConfig, i, u.Redacted())
		}
	}
	host, port, err := net.SplitHostPort(c.Advertise)
	if err != nil {
		return fmt.Errorf("%w: Advertise %q is not host:port (%v): give the address the other members reach this one at, e.g. 10.0.0.5:7946 (port 0 = any free port)", ErrConfig, c.Advertise, err)
	}
	if host == "" {
		return fmt.Errorf("%w: Advertise %q has no host: give an address the other members reach, e.g. 10.0.0.5:7946", ErrConfig, c.Advertise)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("%w: Advertise %q is an unspecified address: give the address the other members reach this one at", ErrConfig, c.Advertise)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%w: Advertise %q: port %q is not a number from 0 to 65535", ErrConfig, c.Advertise, port)
	}
	if c.TTL < 0 || (c.TTL != 0 && (c.TTL < time.Second || c.TTL%time.Second != 0)) {
		return fmt.Errorf("%w: TTL %v: etcd leases count whole seconds: give 1s, 2s, … (0 = %v)", ErrConfig, c.TTL, DefaultTTL)
	}
	if c.DialTimeout < 0 {
		return fmt.Errorf("%w: DialTimeout %v is negative (0 = %v)", ErrConfig, c.DialTimeout, DefaultDialTimeout)
	}
	if c.Prefix != "" && !strings.HasSuffix(c.Prefix, "/") {
		return fmt.Errorf("%w: Prefix %q must end with \"/\" (\"\" = %q)", ErrConfig, c.Prefix, DefaultPrefix)
	}
	return nil
}

// withDefaults fills the zero fields.
func (c Config) withDefaults() Config {
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
