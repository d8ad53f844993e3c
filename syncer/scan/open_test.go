package scan

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestOpenerRefusesSymlinksOnTheWay(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "a/b"), 0o755))
	must(os.WriteFile(filepath.Join(root, "a/b/f"), []byte("f"), 0o644))
	must(os.WriteFile(filepath.Join(root, "a/g"), []byte("g"), 0o644))
	must(os.Symlink(filepath.Join(root, "a"), filepath.Join(root, "link")))
	must(os.Symlink("f", filepath.Join(root, "a/b/lf")))
	must(syscall.Mkfifo(filepath.Join(root, "a/fifo"), 0o644))

	// read opens with Open (an *os.File) or OpenFd and ReadFd.
	for name, read := range map[string]func(o *Opener, p string) (string, int64, error){
		"Open": func(o *Opener, p string) (string, int64, error) {
			f, rec, err := o.Open(p)
			if err != nil {
				return "", 0, err
			}
			defer f.Close()
			b := make([]byte, 16)
			n, _ := f.Read(b)
			return string(b[:n]), rec.Size, nil
		},
		"OpenFd": func(o *Opener, p string) (string, int64, error) {
			fd, rec, err := o.OpenFd(p)
			if err != nil {
				return "", 0, err
			}
			defer syscall.Close(fd)
			b := make([]byte, 16)
			n, err := ReadFd(fd, b)
			return string(b[:n]), rec.Size, err
		},
	} {
		var o Opener
		defer o.Close()
		for _, tc := range []struct {
			path, want string // want: content, or an error substring
		}{
			{"a/b/f", "f"},
			{"a/g", "g"},   // up the cached chain
			{"a/b/f", "f"}, // and down again
			{"link/b/f", "symlink or not a directory"},
			{"a/b/lf", "symlink now"},
			{"a/fifo", "fifo now"},
			{"a/b/f/x", "symlink or not a directory"},
			{"a/nope", "no such file"},
		} {
			got, size, err := read(&o, filepath.Join(root, tc.path))
			if err != nil {
				if !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s %s: %v, want %q", name, tc.path, err, tc.want)
				}
				if tc.want == "symlink or not a directory" && !errors.Is(err, ErrSymlinkedDir) {
					t.Errorf("%s %s: %v is not ErrSymlinkedDir", name, tc.path, err)
				}
				continue
			}
			if got != tc.want || size != int64(len(tc.want)) {
				t.Errorf("%s %s: read %q (size %d), want %q", name, tc.path, got, size, tc.want)
			}
		}
	}
}
