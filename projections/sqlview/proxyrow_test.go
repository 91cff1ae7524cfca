package sqlview

import (
	"bytes"
	"database/sql/driver"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/internal/gen"
)

// rowOf renders the whole proxies row of s (a copy: fillRow reuses its
// buffers).
func rowOf(t *testing.T, s events.State) [proxyCols]any {
	t.Helper()
	a := &applier{}
	r := &proxyRow{st: s}
	if err := a.fillRow(r); err != nil {
		t.Fatal(err)
	}
	var out [proxyCols]any
	for i, v := range a.row {
		if b, ok := v.([]byte); ok {
			v = bytes.Clone(b)
		}
		out[i] = v
	}
	return out
}

// mutations returns copies of s, each with one field (or one field of a
// nested struct) of events.State changed, named by its path.
func mutations(s events.State) map[string]events.State {
	out := map[string]events.State{}
	var walk func(path string, v reflect.Value, set func())
	walk = func(path string, v reflect.Value, set func()) {
		switch x := v.Addr().Interface().(type) {
		case *time.Time:
			if x.IsZero() {
				*x = gen.T0.Add(1234567891)
			} else {
				*x = x.Add(time.Second + 7*time.Millisecond + 3)
			}
			set()
			return
		}
		switch v.Kind() {
		case reflect.Struct:
			for i := range v.NumField() {
				walk(path+"."+v.Type().Field(i).Name, v.Field(i), set)
			}
			return
		case reflect.Bool:
			v.SetBool(!v.Bool())
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			v.SetInt(v.Int() + 1_234_567)
			if v.Type().Size() < 8 {
				v.SetInt(v.Int()%3 + 1)
			}
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			v.SetUint(v.Uint() + 1)
		case reflect.Float32, reflect.Float64:
			v.SetFloat(v.Float() + 1.5)
		case reflect.String:
			v.SetString(v.String() + "x")
		default:
			panic(fmt.Sprintf("mutations: %s has kind %s: teach the test to change it", path, v.Kind()))
		}
		set()
	}
	typ := reflect.TypeFor[events.State]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		var paths []string
		// One mutated copy per leaf field.
		var leaves func(path string, t reflect.Type)
		leaves = func(path string, t reflect.Type) {
			if t == reflect.TypeFor[time.Time]() || t.Kind() != reflect.Struct {
				paths = append(paths, path)
				return
			}
			for j := range t.NumField() {
				leaves(path+"."+t.Field(j).Name, t.Field(j).Type)
			}
		}
		leaves(f.Name, f.Type)
		for _, p := range paths {
			c := s
			v := reflect.ValueOf(&c).Elem()
			parts := strings.Split(p, ".")
			for _, name := range parts {
				v = v.FieldByName(name)
			}
			walk(p, v, func() {})
			out[p] = c
		}
	}
	return out
}

// simPairs are the consecutive states (before and after each event) of
// the proxies of a simulated pool.
func simPairs() [][2]events.State {
	sim := gen.NewSim(7, 5)
	cur := map[string]events.State{}
	var pairs [][2]events.State
	for range 2000 {
		for _, e := range sim.Next() {
			id := e.GetProxyId()
			if id == "" {
				continue
			}
			before, ok := cur[id]
			if !ok {
				before = events.NewState(id)
			}
			after := events.Evolve(before, e)
			cur[id] = after
			pairs = append(pairs, [2]events.State{before, after})
		}
	}
	return pairs
}

// TestChangedColsCoverEveryChange: for the consecutive states of the
// proxies of a simulated pool, and for a change of any one field of
// events.State, every proxies column whose value differs between the two
// states is among changedCols (the update binds only those). A field
// added to events.State and rendered into a column without changedCols
// knowing fails here.
func TestChangedColsCoverEveryChange(t *testing.T) {
	compared, left := 0, 0
	check := func(what string, o, n events.State) {
		mask := changedCols(&o, &n)
		if mask&alwaysCols != alwaysCols {
			t.Fatalf("%s: changedCols leaves out updated_seq or state_pb", what)
		}
		before, after := rowOf(t, o), rowOf(t, n)
		for c := range proxyCols {
			if mask&(1<<c) != 0 {
				continue
			}
			left++
			if !reflect.DeepEqual(before[c], after[c]) {
				t.Errorf("%s changes column %s (%v → %v) but changedCols leaves it out", what, proxyColNames[c], before[c], after[c])
			}
		}
		compared++
	}
	pairs := simPairs()
	for i, p := range pairs {
		check(fmt.Sprintf("event %d of the simulation", i), p[0], p[1])
	}
	for i := 0; i < len(pairs); i += 97 {
		base := pairs[i][1]
		for path, m := range mutations(base) {
			if path == "ProxyID" {
				continue // the row's key: an update is of one proxy's row
			}
			check("changing "+path, base, m)
		}
	}
	if compared == 0 || left == 0 {
		t.Fatalf("compared %d pairs, %d columns left out: the test tests nothing", compared, left)
	}
}

// TestUpdateSQL: the statement sets the columns of the mask in column
// order, the id last.
func TestUpdateSQL(t *testing.T) {
	got := updateSQL(1<<colState | 1<<colTotalChecks | alwaysCols)
	want := "UPDATE proxies SET state=?, total_checks=?, updated_seq=?, state_pb=? WHERE id=?"
	if got != want {
		t.Fatalf("updateSQL = %q, want %q", got, want)
	}
}

// TestUpdateStmtCap: past maxUpdateStmts prepared UPDATEs, a new set of
// columns is written by the statement for every column (prepared once).
func TestUpdateStmtCap(t *testing.T) {
	ctx := t.Context()
	db, err := openDB("", filepath.Join(t.TempDir(), "view.db"), "mode=rwc", viewPragmas...)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := createSchema(ctx, db); err != nil {
		t.Fatal(err)
	}
	a := &applier{db: db}
	if err := a.connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer a.closeStatements()
	err = a.w.conn.Raw(func(dc any) error {
		c := dc.(driver.Conn)
		for i := range maxUpdateStmts + 5 {
			want := alwaysCols | colMask(i)<<colPaused
			_, got, err := a.w.updateStmt(ctx, c, want)
			if err != nil {
				return err
			}
			if i < maxUpdateStmts && got != want || i >= maxUpdateStmts && got != allCols {
				t.Errorf("set %d: the statement sets %b, want %b", i, got, want)
			}
		}
		if len(a.w.upd) > maxUpdateStmts+1 {
			t.Errorf("%d UPDATE statements prepared, the cap is %d (+ the one for every column)", len(a.w.upd), maxUpdateStmts)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
