package state

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
)

// Key prefixes (first byte of every key). Paths and peer names are raw
// bytes; NUL, which neither can contain, separates the parts.
const (
	pfxSentinel = 's' // sentinel JSON
	pfxFile     = 'f' // f dir \0 name -> FileRecord
	pfxBase     = 'b' // b peer \0 path -> FileRecord
	pfxDirty    = 'd' // d peer \0 path -> DirtyRecord
	pfxConflict = 'c' // c path \0 peer -> JSON
	pfxStranded = 'x' // x peer \0 path -> JSON
	pfxAction   = 'a' // a seq(8, big endian) -> JSON
	pfxActSeq   = 'q' // last action seq handed out
	pfxEpoch    = 'e' // epoch, 8 bytes big endian
	pfxHandoff  = 'h' // h node -> JSON
	pfxBlocked  = 'g' // g peer -> JSON: the failover guard blocks pushes to peer
	pfxUnclean  = 'u' // JSON: an owner ended without closing the DB (see Unclean)
)

// checkPath accepts absolute, clean paths without NUL. It works on bytes,
// so any encoding passes. Clean never allocates for an already clean path.
func checkPath(p string) error {
	if p == "" || p[0] != '/' || strings.IndexByte(p, 0) >= 0 || filepath.Clean(p) != p {
		return fmt.Errorf("invalid path %q: must be absolute, clean and without NUL", p)
	}
	return nil
}

func checkName(what, n string) error {
	if n == "" || strings.IndexByte(n, 0) >= 0 {
		return fmt.Errorf("invalid %s name %q: must be non-empty and without NUL", what, n)
	}
	return nil
}

// splitPath: "/" -> ("/", ""), "/a" -> ("/", "a"), "/a/b" -> ("/a", "b").
func splitPath(p string) (dir, name string) {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/", p[i+1:]
	}
	return p[:i], p[i+1:]
}

func joinPath(dir, name string) string {
	switch {
	case name == "":
		return dir
	case dir == "/":
		return "/" + name
	}
	return dir + "/" + name
}

func fileKey(p string) []byte {
	return appendFileKey(make([]byte, 0, 2+len(p)), p)
}

// appendFileKey appends p's file key to k.
func appendFileKey(k []byte, p string) []byte {
	dir, name := splitPath(p)
	k = append(k, pfxFile)
	k = append(k, dir...)
	k = append(k, 0)
	return append(k, name...)
}

// dirPrefix selects the direct children of dir (and, for "/", "/" itself).
func dirPrefix(dir string) []byte {
	k := make([]byte, 0, 2+len(dir))
	k = append(k, pfxFile)
	k = append(k, dir...)
	return append(k, 0)
}

// pathFromFileKey undoes fileKey; ok is false for a malformed key.
func pathFromFileKey(k []byte) (string, bool) {
	i := bytes.IndexByte(k, 0)
	if len(k) < 2 || k[0] != pfxFile || i < 0 {
		return "", false
	}
	return joinPath(string(k[1:i]), string(k[i+1:])), true
}

// pairKey builds prefix a \0 b.
func pairKey(pfx byte, a, b string) []byte {
	k := make([]byte, 0, 2+len(a)+len(b))
	k = append(k, pfx)
	k = append(k, a...)
	k = append(k, 0)
	return append(k, b...)
}

// splitPair undoes pairKey.
func splitPair(k []byte) (a, b string, ok bool) {
	if len(k) < 2 {
		return "", "", false
	}
	i := bytes.IndexByte(k[1:], 0)
	if i < 0 {
		return "", "", false
	}
	return string(k[1 : 1+i]), string(k[2+i:]), true
}

func peerPrefix(pfx byte, peer string) []byte {
	k := make([]byte, 0, 2+len(peer))
	k = append(k, pfx)
	k = append(k, peer...)
	return append(k, 0)
}
