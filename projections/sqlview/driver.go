package sqlview

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"slices"
)

// DriverName is the database/sql driver the view opens its files with. The
// view speaks database/sql only, so that a program that does not keep a
// view does not compile SQLite: a program that does registers the driver,
// usually with
//
//	import _ "github.com/mattn/go-sqlite3" // cgo
//
// Any driver registered under this name that takes SQLite "file:" URIs and
// PRAGMA statements works; SQLite's result codes are read from the driver's
// errors (see sqliteCodes).
const DriverName = "sqlite3"

// ErrNoDriver: no database/sql driver is registered as DriverName.
var ErrNoDriver = errors.New(`sqlview: no SQLite driver registered as "sqlite3": import _ "github.com/mattn/go-sqlite3" in the program (it needs cgo), or leave the SQLite view out`)

// SQLite's primary result codes the view tells apart (sqlite3.h).
const (
	codeError    = 1
	codePerm     = 3
	codeBusy     = 5
	codeLocked   = 6
	codeReadonly = 8
	codeIOErr    = 10
	codeCorrupt  = 11
	codeFull     = 13
	codeCantOpen = 14
	codeAuth     = 23
	codeNotADB   = 26
	// codeReadonlyDBMoved is SQLITE_READONLY_DBMOVED, an extended code: the
	// file was renamed or deleted while open.
	codeReadonlyDBMoved = codeReadonly | 4<<8
)

// sqliteCodes returns SQLite's primary and extended result codes carried by
// err or an error it wraps: a struct error with integer fields Code and
// ExtendedCode (mattn/go-sqlite3's sqlite3.Error) or an error with a
// Code() int method (whose value is the extended code when the driver
// gives one). ok is false when err carries none.
func sqliteCodes(err error) (code, extended int, ok bool) {
	for _, e := range errorTree(err) {
		if c, isCoder := e.(interface{ Code() int }); isCoder {
			x := c.Code()
			return x & 0xff, x, true
		}
		v := reflect.ValueOf(e)
		if v.Kind() == reflect.Pointer && !v.IsNil() {
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			continue
		}
		c, x := v.FieldByName("Code"), v.FieldByName("ExtendedCode")
		if !c.IsValid() || !c.CanInt() {
			continue
		}
		code, extended = int(c.Int()), int(c.Int())
		if x.IsValid() && x.CanInt() {
			extended = int(x.Int())
		}
		return code, extended, true
	}
	return 0, 0, false
}

// errorTree lists err and every error it wraps, depth first.
func errorTree(err error) []error {
	var out []error
	var walk func(error)
	walk = func(e error) {
		if e == nil || len(out) > 64 {
			return
		}
		out = append(out, e)
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		case interface{ Unwrap() []error }:
			for _, w := range u.Unwrap() {
				walk(w)
			}
		}
	}
	walk(err)
	return out
}

// openDB opens the SQLite file at path (absolute) through driverName ("":
// DriverName) with the URI parameters params (e.g. "mode=ro"), running
// pragmas on every new connection.
func openDB(driverName, path, params string, pragmas ...string) (*sql.DB, error) {
	if driverName == "" {
		driverName = DriverName
	}
	if err := CheckDriver(driverName); err != nil {
		return nil, err
	}
	db, err := sql.Open(driverName, "")
	if err != nil {
		return nil, err
	}
	drv := db.Driver()
	if err := db.Close(); err != nil {
		return nil, err
	}
	name := (&url.URL{Scheme: "file", Path: path}).String()
	if params != "" {
		name += "?" + params
	}
	return sql.OpenDB(connector{drv: drv, name: name, pragmas: pragmas}), nil
}

// CheckDriver says whether the driver driverName ("": DriverName) is
// registered, ErrNoDriver if not.
func CheckDriver(driverName string) error {
	if driverName == "" {
		driverName = DriverName
	}
	if slices.Contains(sql.Drivers(), driverName) {
		return nil
	}
	if driverName == DriverName {
		return ErrNoDriver
	}
	return fmt.Errorf("%w (asked for driver %q)", ErrNoDriver, driverName)
}

// connector opens connections to one file and sets them up: the pragmas
// DSN parameters of one driver or another would set, in plain SQL.
type connector struct {
	drv     driver.Driver
	name    string
	pragmas []string
}

// Connect implements driver.Connector.
func (c connector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.drv.Open(c.name)
	if err != nil {
		return nil, err
	}
	for _, p := range c.pragmas {
		if err := execConn(ctx, conn, p); err != nil {
			conn.Close()
			return nil, err
		}
	}
	return conn, nil
}

// Driver implements driver.Connector.
func (c connector) Driver() driver.Driver { return c.drv }

// execConn runs one statement without arguments on a driver connection.
func execConn(ctx context.Context, conn driver.Conn, query string) error {
	if ex, ok := conn.(driver.ExecerContext); ok {
		_, err := ex.ExecContext(ctx, query, nil)
		if !errors.Is(err, driver.ErrSkip) {
			return err
		}
	}
	st, err := conn.Prepare(query)
	if err != nil {
		return err
	}
	defer st.Close()
	//nolint:staticcheck // the fallback for drivers without ExecerContext
	_, err = st.Exec(nil)
	return err
}
