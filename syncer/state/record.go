package state

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"

	"ocf-csync/syncer/config"
)

// Kind is the type of a file system object.
type Kind uint8

const (
	KindNone Kind = iota // absent: used for deletions and "no base"
	KindReg
	KindDir
	KindSymlink
	KindFifo
	KindChr
	KindBlk
	KindSock
)

var kindNames = [...]string{"none", "reg", "dir", "lnk", "fifo", "chr", "blk", "sock"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// KindOf maps an fs.FileMode type to a Kind.
func KindOf(m fs.FileMode) Kind {
	switch m.Type() {
	case 0:
		return KindReg
	case fs.ModeDir:
		return KindDir
	case fs.ModeSymlink:
		return KindSymlink
	case fs.ModeNamedPipe:
		return KindFifo
	case fs.ModeDevice | fs.ModeCharDevice:
		return KindChr
	case fs.ModeDevice:
		return KindBlk
	case fs.ModeSocket:
		return KindSock
	}
	return KindNone
}

// Hash is a sha256 of a regular file's content.
type Hash [sha256.Size]byte

// FileRecord is what a node knows about one path: the lstat result plus the
// content hash of a regular file. Mode holds only the permission bits
// (st_mode & 07777); the type is in Kind.
type FileRecord struct {
	Kind    Kind
	Mode    uint32
	UID     uint32
	GID     uint32
	Size    int64
	MtimeNs int64
	CtimeNs int64
	Dev     uint64
	Ino     uint64
	Nlink   uint32
	Rdev    uint64
	Target  string // symlink target, never followed
	Hash    Hash   // regular files only
}

// Ignore names the metadata that csync2's "ignore uid|gid|mod" drops; the
// type is the config's (config imports nothing of ours).
type Ignore = config.Ignore

// SameContent reports whether two records describe the same object content:
// same type, and same bytes, link target or device number.
func (r *FileRecord) SameContent(o *FileRecord) bool {
	if r.Kind != o.Kind {
		return false
	}
	switch r.Kind {
	case KindReg:
		return r.Size == o.Size && r.Hash == o.Hash
	case KindSymlink:
		return r.Target == o.Target
	case KindChr, KindBlk:
		return r.Rdev == o.Rdev
	}
	return true
}

// SameMeta reports whether the synced metadata agree. Symlinks carry no mode
// or mtime worth syncing; directory mtimes are synced.
func (r *FileRecord) SameMeta(o *FileRecord, ig Ignore) bool {
	if !ig.UID && r.UID != o.UID {
		return false
	}
	if !ig.GID && r.GID != o.GID {
		return false
	}
	if r.Kind == KindSymlink {
		return true
	}
	if !ig.Mode && r.Mode != o.Mode {
		return false
	}
	return r.MtimeNs == o.MtimeNs
}

// SameSyncState is SameContent and SameMeta: nothing a peer would need.
func (r *FileRecord) SameSyncState(o *FileRecord, ig Ignore) bool {
	return r.SameContent(o) && r.SameMeta(o, ig)
}

// StatChanged reports whether the lstat fields differ, which is the trigger to
// re-hash a regular file. It ignores Hash.
func (r *FileRecord) StatChanged(o *FileRecord) bool {
	return r.Kind != o.Kind || r.Size != o.Size || r.MtimeNs != o.MtimeNs ||
		r.CtimeNs != o.CtimeNs || r.Ino != o.Ino || r.Dev != o.Dev ||
		r.Mode != o.Mode || r.UID != o.UID || r.GID != o.GID ||
		r.Target != o.Target || r.Rdev != o.Rdev || r.Nlink != o.Nlink
}

const recordVersion = 1

// MarshalBinary encodes the record compactly (varints), version-tagged.
func (r *FileRecord) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 64+len(r.Target)+len(r.Hash))
	b = append(b, recordVersion, byte(r.Kind))
	b = binary.AppendUvarint(b, uint64(r.Mode))
	b = binary.AppendUvarint(b, uint64(r.UID))
	b = binary.AppendUvarint(b, uint64(r.GID))
	b = binary.AppendVarint(b, r.Size)
	b = binary.AppendVarint(b, r.MtimeNs)
	b = binary.AppendVarint(b, r.CtimeNs)
	b = binary.AppendUvarint(b, r.Dev)
	b = binary.AppendUvarint(b, r.Ino)
	b = binary.AppendUvarint(b, uint64(r.Nlink))
	b = binary.AppendUvarint(b, r.Rdev)
	b = binary.AppendUvarint(b, uint64(len(r.Target)))
	b = append(b, r.Target...)
	if r.Kind == KindReg {
		b = append(b, r.Hash[:]...)
	}
	return b, nil
}

var errBadRecord = errors.New("malformed file record")

// UnmarshalBinary decodes what MarshalBinary wrote.
func (r *FileRecord) UnmarshalBinary(b []byte) error {
	if len(b) < 2 || b[0] != recordVersion {
		return errBadRecord
	}
	*r = FileRecord{Kind: Kind(b[1])}
	b = b[2:]
	var err error
	u := func() uint64 {
		if err != nil {
			return 0
		}
		v, n := binary.Uvarint(b)
		if n <= 0 {
			err = errBadRecord
			return 0
		}
		b = b[n:]
		return v
	}
	s := func() int64 {
		if err != nil {
			return 0
		}
		v, n := binary.Varint(b)
		if n <= 0 {
			err = errBadRecord
			return 0
		}
		b = b[n:]
		return v
	}
	r.Mode = uint32(u())
	r.UID = uint32(u())
	r.GID = uint32(u())
	r.Size = s()
	r.MtimeNs = s()
	r.CtimeNs = s()
	r.Dev = u()
	r.Ino = u()
	r.Nlink = uint32(u())
	r.Rdev = u()
	tl := u()
	if err != nil {
		return err
	}
	if tl > uint64(len(b)) {
		return errBadRecord
	}
	r.Target = string(b[:tl])
	b = b[tl:]
	if r.Kind == KindReg {
		if len(b) < len(r.Hash) {
			return errBadRecord
		}
		copy(r.Hash[:], b)
		b = b[len(r.Hash):]
	}
	if len(b) != 0 {
		return errBadRecord
	}
	return nil
}
