package membership

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	good := Config{Cluster: "c", Endpoints: []string{"http://127.0.0.1:2379"}, Advertise: "127.0.0.1:0"}
	if err := good.Validate(); err != nil {
		t.Fatalf("a good config: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		says string
	}{
		{"no cluster", func(c *Config) { c.Cluster = "" }, "Cluster is empty"},
		{"slash in cluster", func(c *Config) { c.Cluster = "a/b" }, `"a/b"`},
		{"no endpoints", func(c *Config) { c.Endpoints = nil }, "Endpoints is empty"},
		{"empty endpoint", func(c *Config) { c.Endpoints = []string{" "} }, "empty entry"},
		{"credentials in an endpoint", func(c *Config) { c.Endpoints = []string{"http://root:s3cret@127.0.0.1:2379"} }, "carries credentials"},
		{"advertise not host:port", func(c *Config) { c.Advertise = "127.0.0.1" }, "not host:port"},
		{"advertise without host", func(c *Config) { c.Advertise = ":7000" }, "no host"},
		{"advertise unspecified", func(c *Config) { c.Advertise = "0.0.0.0:7000" }, "unspecified"},
		{"advertise bad port", func(c *Config) { c.Advertise = "127.0.0.1:99999" }, "65535"},
		{"ttl under a second", func(c *Config) { c.TTL = 500 * time.Millisecond }, "whole seconds"},
		{"ttl not whole", func(c *Config) { c.TTL = 1500 * time.Millisecond }, "whole seconds"},
		{"negative dial timeout", func(c *Config) { c.DialTimeout = -time.Second }, "negative"},
		{"prefix without slash", func(c *Config) { c.Prefix = "/x" }, `end with "/"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			err := c.Validate()
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("Validate = %v, want ErrConfig", err)
			}
			if !strings.HasPrefix(err.Error(), "membership: ") || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("message %q does not say %q", err, tc.says)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("message %q shows a password", err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.TTL != DefaultTTL || c.DialTimeout != DefaultDialTimeout || c.Prefix != DefaultPrefix || c.Logger == nil {
		t.Fatalf("defaults: %+v", c)
	}
}
