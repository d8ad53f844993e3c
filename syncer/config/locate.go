package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// The config files tried, in order, when none is named (DESIGN §4): the
// ocf-csync one, then csync2's own, which is the migration path.
const (
	DefaultFile = "/etc/ocf-csync.cfg"
	Csync2File  = "/etc/csync2.cfg"
	// ExampleFile is the packaged example to start from.
	ExampleFile = "/usr/share/doc/ocf-csync/examples/ocf-csync.cfg"
)

// Located is the config file Locate chose.
type Located struct {
	Path     string
	Fallback bool     // DefaultFile is missing and Csync2File is used
	Tried    []string // every path looked at, in order
}

// Locate picks the config file when none was named: DefaultFile, else
// Csync2File. root prefixes both ("" or "/" is the real root; tests use a
// fake one). Neither existing is a *NotFoundError naming both paths and
// how to start.
func Locate(root string) (Located, error) {
	var l Located
	for i, p := range []string{DefaultFile, Csync2File} {
		full := filepath.Join("/", root, p)
		l.Tried = append(l.Tried, full)
		_, err := os.Stat(full)
		if err == nil {
			l.Path, l.Fallback = full, i > 0
			return l, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return l, &Error{Msg: "cannot read config file", Err: err}
		}
	}
	return l, &NotFoundError{Tried: l.Tried}
}

// NotFoundError: none of the default config files exists. It matches
// ErrInvalid and fs.ErrNotExist.
type NotFoundError struct{ Tried []string }

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("no config file: tried %s; create one with 'ocf-csync init', or start from %s, or name one with --config FILE",
		strings.Join(e.Tried, " and "), ExampleFile)
}

func (e *NotFoundError) Unwrap() []error { return []error{ErrInvalid, fs.ErrNotExist} }
