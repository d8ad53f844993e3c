package tests

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// entry is everything about one object that a sync must reproduce. Fields
// that must differ between nodes (inode, device, ctime) are left out;
// Nlink is kept for regular files, so a split hardlink shows.
type entry struct {
	Path   string // relative to the root, "." for the root itself
	Type   string
	Mode   uint32 // st_mode & 07777
	UID    uint32
	GID    uint32
	Mtime  int64 // ns
	Size   int64 // regular files and symlinks
	SHA256 string
	Target string
	Nlink  uint64
	Rdev   uint64
}

func (e entry) String() string {
	s := fmt.Sprintf("%s %s mode=%04o uid=%d gid=%d mtime=%d", strconv.Quote(e.Path), e.Type, e.Mode, e.UID, e.GID, e.Mtime)
	switch e.Type {
	case "file":
		s += fmt.Sprintf(" size=%d nlink=%d sha256=%s", e.Size, e.Nlink, e.SHA256)
	case "symlink":
		s += " target=" + strconv.Quote(e.Target)
	case "chr", "blk":
		s += fmt.Sprintf(" rdev=%d", e.Rdev)
	}
	return s
}

// manifest describes the tree at root (a host-side path), sorted by path.
func manifest(t testing.TB, root string) []entry {
	t.Helper()
	var out []entry
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		e, err := describe(p, rel)
		if err != nil {
			return err
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		t.Fatalf("manifest of %s: %v", root, err)
	}
	// diffManifests merges by path order, which is not the walk's order
	// ("a.b" sorts before "a/x").
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func describe(p, rel string) (entry, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return entry{}, fmt.Errorf("lstat %s: %w", p, err)
	}
	e := entry{Path: rel, Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid,
		Mtime: st.Mtim.Sec*1e9 + st.Mtim.Nsec}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		e.Type = "dir"
	case unix.S_IFREG:
		e.Type, e.Size, e.Nlink = "file", st.Size, uint64(st.Nlink)
		sum, err := fileSHA256(p)
		if err != nil {
			return e, err
		}
		e.SHA256 = sum
	case unix.S_IFLNK:
		e.Type, e.Size = "symlink", st.Size
		t, err := os.Readlink(p)
		if err != nil {
			return e, err
		}
		e.Target = t
	case unix.S_IFIFO:
		e.Type = "fifo"
	case unix.S_IFSOCK:
		e.Type = "socket"
	case unix.S_IFCHR:
		e.Type, e.Rdev = "chr", st.Rdev
	case unix.S_IFBLK:
		e.Type, e.Rdev = "blk", st.Rdev
	default:
		e.Type = fmt.Sprintf("mode(%o)", st.Mode)
	}
	return e, nil
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// diffManifests describes the first differences between two manifests
// ("" when equal): entries only in one, and entries that differ.
func diffManifests(aName string, a []entry, bName string, b []entry) string {
	const maxShown = 10
	var lines []string
	add := func(s string) {
		if len(lines) < maxShown {
			lines = append(lines, s)
		} else if len(lines) == maxShown {
			lines = append(lines, "  …")
		}
	}
	total := 0
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i].Path < b[j].Path):
			add(fmt.Sprintf("  only on %s: %s", aName, a[i]))
			i++
		case i == len(a) || b[j].Path < a[i].Path:
			add(fmt.Sprintf("  only on %s: %s", bName, b[j]))
			j++
		default:
			if a[i] != b[j] {
				add(fmt.Sprintf("  %s: %s\n  %s: %s", aName, a[i], bName, b[j]))
			} else {
				i, j = i+1, j+1
				continue
			}
			i, j = i+1, j+1
		}
		total++
	}
	if total == 0 {
		return ""
	}
	return fmt.Sprintf("%d entries differ between %s and %s:\n%s", total, aName, bName, strings.Join(lines, "\n"))
}

// TestDiffManifests checks that the diff names what differs.
func TestDiffManifests(t *testing.T) {
	a := []entry{{Path: "a", Type: "file"}, {Path: "b", Type: "dir", Mode: 0o755}, {Path: "c", Type: "file"}}
	b := []entry{{Path: "b", Type: "dir", Mode: 0o700}, {Path: "c", Type: "file"}, {Path: "d", Type: "fifo"}}
	d := diffManifests("x", a, "y", b)
	for _, want := range []string{"3 entries differ", `only on x: "a"`, `only on y: "d"`, "mode=0755", "mode=0700"} {
		if !strings.Contains(d, want) {
			t.Errorf("diff lacks %q:\n%s", want, d)
		}
	}
	if d := diffManifests("x", a, "y", a); d != "" {
		t.Errorf("diff of equal manifests = %q, want empty", d)
	}
}
