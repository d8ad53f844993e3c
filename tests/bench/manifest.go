package main

import (
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
)

// entry is one manifest line: what must be equal between source and target.
type entry struct {
	typ   fs.FileMode // fs.ModeType bits
	perm  fs.FileMode
	size  int64
	mtime int64 // ns; directories included
	sum   [32]byte
	link  string
}

func (e entry) String() string {
	s := fmt.Sprintf("type=%v perm=%v size=%d mtime=%d", e.typ, e.perm, e.size, e.mtime)
	if e.typ == 0 {
		s += fmt.Sprintf(" sha256=%.8x", e.sum)
	}
	if e.link != "" {
		s += " -> " + e.link
	}
	return s
}

// manifest lists every entry below root (root itself as "."): type, mode,
// size, mtime and the sha256 of regular files, hashed by 4 workers.
func manifest(root string) (map[string]entry, error) { return walkManifest(root, true) }

// walkManifest lists every entry; without hash, sums stay zero.
func walkManifest(root string, hash bool) (map[string]entry, error) {
	m := map[string]entry{}
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		st := fi.Sys().(*syscall.Stat_t)
		e := entry{typ: fi.Mode().Type(), perm: fi.Mode().Perm(), mtime: st.Mtim.Nano()}
		switch {
		case fi.Mode().IsRegular():
			e.size = fi.Size()
			if hash {
				files = append(files, rel)
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			e.link, _ = os.Readlink(p)
		}
		m[rel] = e
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("manifest of %s: %w", root, err)
	}
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	next := make(chan string)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			for rel := range next {
				sum, err := hashFile(filepath.Join(root, rel), buf)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				e := m[rel]
				e.sum = sum
				m[rel] = e
				mu.Unlock()
			}
		}()
	}
	for _, f := range files {
		next <- f
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return nil, fmt.Errorf("manifest of %s: %w", root, firstErr)
	}
	return m, nil
}

func hashFile(p string, buf []byte) ([32]byte, error) {
	var sum [32]byte
	f, err := os.Open(p)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, buf); err != nil {
		return sum, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// diffManifests returns up to max differences between want and got, and
// how many there are in all.
func diffManifests(want, got map[string]entry, max int) (int, []string) {
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	n := 0
	var out []string
	for _, k := range keys {
		w, wok := want[k]
		g, gok := got[k]
		var d string
		switch {
		case !gok:
			d = "missing on target: " + k
		case !wok:
			d = "extra on target: " + k
		case w != g:
			d = fmt.Sprintf("%s: source %v, target %v", k, w, g)
		default:
			continue
		}
		n++
		if len(out) < max {
			out = append(out, d)
		}
	}
	return n, out
}

// verify compares a target tree against the source manifest. With
// dirTimesLax, directories whose only difference is the mtime are counted
// in dirTimes instead of failing (csync2 does not keep directory mtimes).
func verify(src map[string]entry, target string, dirTimesLax bool) (dirTimes int, err error) {
	got, err := manifest(target)
	if err != nil {
		return 0, err
	}
	if dirTimesLax {
		for k, g := range got {
			if w, ok := src[k]; ok && w.typ == fs.ModeDir && g.typ == fs.ModeDir && w.mtime != g.mtime {
				g.mtime = w.mtime
				got[k] = g
				dirTimes++
			}
		}
	}
	n, diffs := diffManifests(src, got, 5)
	if n == 0 {
		return dirTimes, nil
	}
	return dirTimes, fmt.Errorf("%d entries differ from the source, e.g. %s", n, strings.Join(diffs, "; "))
}

// sourceUnchanged checks, by stat only, that a run left the source as the
// manifest saw it (csync2 puts temp files next to the files it reads unless
// its tempdir is set, which changes directory mtimes).
func sourceUnchanged(src map[string]entry, root string) error {
	now, err := walkManifest(root, false)
	if err != nil {
		return err
	}
	want := make(map[string]entry, len(src))
	for k, e := range src {
		e.sum = [32]byte{}
		want[k] = e
	}
	n, diffs := diffManifests(want, now, 3)
	if n == 0 {
		return nil
	}
	return fmt.Errorf("the run changed %d entries of the source tree, e.g. %s", n, strings.Join(diffs, "; "))
}
