package httpapi

import (
	"bytes"
	"reflect"
	"testing"
	"time"
)

// fillEvery sets every field of the struct v points to (recursively, and
// one element in slices and maps) to a value that is not its zero value,
// except the fields named in skip, so that encoding/json writes all of
// them, omitempty ones included. It fails the test on a kind it does not
// know: a new field of a new kind needs it here, and in appendJSON.
func fillEvery(t *testing.T, v reflect.Value, skip map[string]bool) {
	t.Helper()
	at := time.Date(2026, 12, 6, 18, 40, 0, 5, time.UTC)
	var fill func(v reflect.Value, name string)
	fill = func(v reflect.Value, name string) {
		switch v.Kind() {
		case reflect.String:
			v.SetString("x-" + name)
		case reflect.Bool:
			v.SetBool(true)
		case reflect.Int, reflect.Int32, reflect.Int64:
			v.SetInt(7)
		case reflect.Uint32, reflect.Uint64:
			v.SetUint(9)
		case reflect.Float64:
			v.SetFloat(12.5)
		case reflect.Pointer:
			if v.Type() == reflect.TypeFor[*time.Time]() {
				v.Set(reflect.ValueOf(&at))
				return
			}
			v.Set(reflect.New(v.Type().Elem()))
			fill(v.Elem(), name)
		case reflect.Slice:
			s := reflect.MakeSlice(v.Type(), 1, 1)
			fill(s.Index(0), name)
			v.Set(s)
		case reflect.Map:
			m := reflect.MakeMap(v.Type())
			e := reflect.New(v.Type().Elem()).Elem()
			fill(e, name)
			m.SetMapIndex(reflect.ValueOf("k-"+name), e)
			v.Set(m)
		case reflect.Struct:
			for i := range v.NumField() {
				f := v.Type().Field(i)
				if skip[v.Type().Name()+"."+f.Name] {
					continue
				}
				fill(v.Field(i), f.Name)
			}
		default:
			t.Fatalf("fillEvery: field %s is a %s; teach fillEvery (and appendJSON) about it", name, v.Kind())
		}
	}
	fill(v.Elem(), "")
}

// TestAppendJSONWritesEveryField: with every field set (but those that
// send a body to encoding/json on purpose), appendJSON writes what
// encoding/json writes. A field added to Proxy, Pool or the types in them
// and not to their appendJSON fails here, instead of going missing from
// the API's answers.
func TestAppendJSONWritesEveryField(t *testing.T) {
	skip := map[string]bool{"ProxyList.ClusterAnswer": true, "Pool.Cluster": true, "Pool.ClusterAnswer": true}
	for name, v := range map[string]jsonAppender{"ProxyList": &ProxyList{}, "Pool": &Pool{}} {
		t.Run(name, func(t *testing.T) {
			fillEvery(t, reflect.ValueOf(v), skip)
			want, encodes := encodingJSON(t, v)
			got, ok := v.appendJSON(nil)
			if !ok || !encodes {
				t.Fatalf("appendJSON ok %v, encoding/json ok %v; want both to write the filled %s", ok, encodes, name)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("appendJSON wrote\n%s\nencoding/json\n%s", got, want)
			}
		})
	}
}
