package sources

import (
	"fmt"
	"sort"
	"strings"
)

// EnvSuffix marks a header whose value comes from the environment: in a
// source's headers, "X-Api-Key_env: PROVIDER_KEY" sends the header
// X-Api-Key with the value of $PROVIDER_KEY.
const EnvSuffix = "_env"

// ResolveHeaders builds the headers of a URL source from its configuration:
// a key NAME_env takes the value of the environment variable its value
// names (through getenv, os.Getenv in a program); any other key is sent
// with its value as written (do not write secrets there). It fails, wrapping
// ErrHeaders, when a variable is unset or empty, a name or value is not a
// valid header, or a header is given twice; errors name the header and the
// variable, never a value.
func ResolveHeaders(spec map[string]string, getenv func(string) string) (map[string]string, error) {
	if len(spec) == 0 {
		return nil, nil
	}
	keys := make([]string, 0, len(spec))
	for k := range spec {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic errors
	out := make(map[string]string, len(spec))
	canon := map[string]string{}
	for _, k := range keys {
		name, value := k, spec[k]
		if base, ok := strings.CutSuffix(k, EnvSuffix); ok {
			name = base
			if value == "" {
				return nil, fmt.Errorf("%w: header %s: %s names no environment variable", ErrHeaders, cut(base, 64), cut(k, 70))
			}
			if value = getenv(spec[k]); value == "" {
				return nil, fmt.Errorf("%w: header %s: the environment variable %s is unset or empty: set it, or remove the header", ErrHeaders, cut(base, 64), cut(spec[k], 64))
			}
		}
		if reason := checkHeader(name, value); reason != "" {
			return nil, fmt.Errorf("%w: %s", ErrHeaders, reason)
		}
		lower := strings.ToLower(name)
		if prev, dup := canon[lower]; dup {
			return nil, fmt.Errorf("%w: header %s is given twice (%s and %s)", ErrHeaders, cut(name, 64), cut(prev, 70), cut(k, 70))
		}
		canon[lower] = k
		out[name] = value
	}
	return out, nil
}
