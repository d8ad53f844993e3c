package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLocate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		files    []string
		want     string
		fallback bool
	}{
		{"ocf-csync.cfg only", []string{DefaultFile}, DefaultFile, false},
		{"both: ocf-csync.cfg wins", []string{DefaultFile, Csync2File}, DefaultFile, false},
		{"csync2.cfg only: the migration path", []string{Csync2File}, Csync2File, true},
		{"neither", nil, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range tc.files {
				p := filepath.Join(root, f)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			loc, err := Locate(root)
			if tc.want == "" {
				var nf *NotFoundError
				if !errors.As(err, &nf) || !errors.Is(err, ErrInvalid) || !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("Locate = %+v, %v; want a NotFoundError", loc, err)
				}
				msg := err.Error()
				for _, s := range []string{root + DefaultFile, root + Csync2File, "ocf-csync init", ExampleFile} {
					if !strings.Contains(msg, s) {
						t.Errorf("message %q does not name %q", msg, s)
					}
				}
				return
			}
			if err != nil || loc.Path != filepath.Join(root, tc.want) || loc.Fallback != tc.fallback {
				t.Fatalf("Locate = %+v, %v; want %s (fallback %v)", loc, err, tc.want, tc.fallback)
			}
		})
	}
}
