package httpapi

import (
	"net/url"
	"testing"
)

// FuzzRawQuery: rawQuery.get answers what url.Values.Get answers of
// url.ParseQuery's map, for any query and key (escapes, bad escapes,
// semicolons, repeated and empty keys).
func FuzzRawQuery(f *testing.F) {
	for _, seed := range []struct{ query, key string }{
		{"state=healthy&limit=100", "limit"},
		{"state=healthy&limit=100", "scope"},
		{"", "state"},
		{"a=1&a=2", "a"},
		{"a=%zz&a=2", "a"},
		{"a%zz=1&a=2", "a"},
		{"a=1;b=2&a=3", "a"},
		{"source=my+list&source=x", "source"},
		{"so%75rce=%41b", "source"},
		{"&&a&a=1", "a"},
		{"tag=a=b", "tag"},
		{"=x&=y", ""},
	} {
		f.Add(seed.query, seed.key)
	}
	f.Fuzz(func(t *testing.T, query, key string) {
		vals, _ := url.ParseQuery(query)
		if got, want := rawQuery(query).get(key), vals.Get(key); got != want {
			t.Errorf("rawQuery(%q).get(%q) = %q; url.Values.Get says %q", query, key, got, want)
		}
	})
}
