package sources

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestResolveHeaders(t *testing.T) {
	env := map[string]string{"PROVIDER_KEY": apiKey, "BROKEN": "a\r\nX-Evil: " + apiKey}
	getenv := func(k string) string { return env[k] }

	got, err := ResolveHeaders(map[string]string{"X-Api-Key_env": "PROVIDER_KEY", "X-Client": "proxyhealth"}, getenv)
	if err != nil || !reflect.DeepEqual(got, map[string]string{"X-Api-Key": apiKey, "X-Client": "proxyhealth"}) {
		t.Fatalf("ResolveHeaders = %v, %v", got, err)
	}
	if got, err := ResolveHeaders(nil, getenv); got != nil || err != nil {
		t.Fatalf("no headers: %v, %v", got, err)
	}

	for _, tt := range []struct {
		spec map[string]string
		want string
	}{
		{map[string]string{"X-Api-Key_env": "UNSET_VAR"}, "header X-Api-Key: the environment variable UNSET_VAR is unset or empty"},
		{map[string]string{"X-Api-Key_env": ""}, "header X-Api-Key: X-Api-Key_env names no environment variable"},
		{map[string]string{"X-Api-Key_env": "BROKEN"}, "header X-Api-Key: the value contains a line break"},
		{map[string]string{"Bad Name": "v"}, "a header name is not a valid HTTP header name"},
		{map[string]string{"X-Api-Key_env": "PROVIDER_KEY", "x-api-key": "literal"}, "header x-api-key is given twice (X-Api-Key_env and x-api-key)"},
	} {
		_, err := ResolveHeaders(tt.spec, getenv)
		if !errors.Is(err, ErrHeaders) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ResolveHeaders(%v) error %v, want %q", tt.spec, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), apiKey) {
			t.Errorf("error %q shows the header value", err)
		}
	}
}
