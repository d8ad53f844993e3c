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
		f, rec, err := o.Open(filepath.Join(root, tc.path))
		if err != nil {
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: %v, want %q", tc.path, err, tc.want)
			}
			if tc.want == "symlink or not a directory" && !errors.Is(err, ErrSymlinkedDir) {
				t.Errorf("%s: %v is not ErrSymlinkedDir", tc.path, err)
			}
			continue
		}
		b := make([]byte, 16)
		n, _ := f.Read(b)
		f.Close()
		if string(b[:n]) != tc.want || rec.Size != int64(len(tc.want)) {
			t.Errorf("%s: read %q (size %d), want %q", tc.path, b[:n], rec.Size, tc.want)
		}
	}
}
