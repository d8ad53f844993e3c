package apply

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// The cached parent directory (Options.CacheDir) against a local user who
// changes the tree between two writes of one batch.
func TestDirCacheRaces(t *testing.T) {
	tests := []struct {
		name string
		// between runs after the first write to root/d/a.
		between func(t *testing.T, root, outside string)
		sync    bool // a batch boundary (Sync) after between
		// wantB is where root/d/b's content must be ("" = nowhere).
		wantB   string
		wantErr error
	}{
		{
			name: "directory replaced by a symlink",
			between: func(t *testing.T, root, outside string) {
				must(t, os.Rename(filepath.Join(root, "d"), filepath.Join(root, "moved")))
				must(t, os.Symlink(outside, filepath.Join(root, "d")))
			},
			// The handle names the directory it opened: never the symlink's target.
			wantB: "moved/b",
		},
		{
			name: "directory replaced by a symlink, next batch",
			between: func(t *testing.T, root, outside string) {
				must(t, os.Rename(filepath.Join(root, "d"), filepath.Join(root, "moved")))
				must(t, os.Symlink(outside, filepath.Join(root, "d")))
			},
			sync:    true,
			wantErr: ErrRefused,
		},
		{
			name: "directory removed and made again",
			between: func(t *testing.T, root, outside string) {
				must(t, os.RemoveAll(filepath.Join(root, "d")))
				must(t, os.Mkdir(filepath.Join(root, "d"), 0o755))
			},
			wantB: "d/b",
		},
		{
			name: "directory removed",
			between: func(t *testing.T, root, outside string) {
				must(t, os.RemoveAll(filepath.Join(root, "d")))
			},
			wantB: "d/b", // its parents are made again, as for any write
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, outside := t.TempDir(), t.TempDir()
			must(t, os.Mkdir(filepath.Join(root, "d"), 0o755))
			tg := New(Options{CacheDir: true, DeferSync: true})
			defer tg.Sync()
			write := func(name string) error {
				p := filepath.Join(root, "d", name)
				if err := tg.Check(p); err != nil {
					return err
				}
				if err := tg.MkdirParents(p); err != nil {
					return err
				}
				rec := regRec(name, 0o644, uint32(os.Getuid()), uint32(os.Getgid()), mtime)
				return tg.WriteFile(p, rec, fillWith(name))
			}
			must(t, write("a"))
			tc.between(t, root, outside)
			if tc.sync {
				must(t, tg.Sync())
			}
			err := write("b")
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("second write: %v, want %v", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatalf("second write: %v", err)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Errorf("written through the symlink: %v", ents)
			}
			if tc.wantB != "" {
				if got := readFile(t, filepath.Join(root, tc.wantB)); got != "b" {
					t.Errorf("%s = %q", tc.wantB, got)
				}
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
