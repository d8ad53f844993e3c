package state

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Key prefixes of the data-safety records (upper case: rare records).
const (
	pfxRoot     = 'R' // R path -> RootRecord JSON: the file system an include root (or a mount below one) was on
	pfxRefusals = 'V' // the current refusals, one JSON list
	pfxDeletes  = 'W' // W peer \0 group -> deletions pushed recently (JSON list)
)

// FSIdentity names the file system a path lies on, in terms that survive a
// reboot: the file system's UUID (FS_IOC_GETFSUUID) or statfs f_fsid where
// the file system has one, else the mount source; plus where it is mounted
// and which of its directories is mounted there (a bind mount differs).
// Dev (st_dev) is kept for display only: device numbers of device-mapper
// and NFS can change across a reboot.
type FSIdentity struct {
	FSType     string `json:"fs_type"`
	UUID       string `json:"uuid,omitempty"`
	FSID       string `json:"fsid,omitempty"`
	Source     string `json:"source,omitempty"`
	MountPoint string `json:"mount_point"`
	MountRoot  string `json:"mount_root"`
	Dev        uint64 `json:"dev,omitempty"`
}

// Same reports whether a and b are the same file system mounted the same
// way. The strongest identity both sides have decides: UUID, then f_fsid,
// then the mount source.
func (a FSIdentity) Same(b FSIdentity) bool {
	if a.FSType != b.FSType || a.MountPoint != b.MountPoint || a.MountRoot != b.MountRoot {
		return false
	}
	switch {
	case a.UUID != "" && b.UUID != "":
		return a.UUID == b.UUID
	case a.FSID != "" && b.FSID != "":
		return a.FSID == b.FSID
	}
	return a.Source == b.Source
}

// String describes the identity for messages: `ext4 /dev/vda at / (fsid …)`.
func (a FSIdentity) String() string {
	var b strings.Builder
	b.WriteString(a.FSType)
	if a.Source != "" {
		fmt.Fprintf(&b, " %q", a.Source)
	}
	if a.MountRoot != "" && a.MountRoot != "/" {
		fmt.Fprintf(&b, " (its %s)", a.MountRoot)
	}
	fmt.Fprintf(&b, " mounted at %s", a.MountPoint)
	switch {
	case a.UUID != "":
		fmt.Fprintf(&b, ", uuid %s", a.UUID)
	case a.FSID != "":
		fmt.Fprintf(&b, ", fsid %s", a.FSID)
	}
	return b.String()
}

// RootRecord is what this node last knew about an include root, or about a
// mount point found below one (Mount): the file system it was on and how
// many entries were tracked below it then.
type RootRecord struct {
	Path      string     `json:"-"`
	ID        FSIdentity `json:"id"`
	Entries   int        `json:"entries"`
	Mount     bool       `json:"mount,omitempty"`
	UpdatedNs int64      `json:"updated_ns"`
}

func rootKey(path string) []byte { return append([]byte{pfxRoot}, path...) }

// GetRoot returns the record of an include root or mount point.
func (s *Store) GetRoot(path string) (RootRecord, bool, error) {
	if err := checkPath(path); err != nil {
		return RootRecord{}, false, fmt.Errorf("state db get root: %w", err)
	}
	var r RootRecord
	found, err := s.getJSON(rootKey(path), &r)
	r.Path = path
	return r, found, err
}

// PutRoot stores (durably) what is known about an include root.
func (s *Store) PutRoot(r RootRecord) error {
	if err := checkPath(r.Path); err != nil {
		return fmt.Errorf("state db put root: %w", err)
	}
	return s.putJSON(rootKey(r.Path), r, true)
}

// DeleteRoot forgets an include root or mount point.
func (s *Store) DeleteRoot(path string) error {
	if err := checkPath(path); err != nil {
		return fmt.Errorf("state db delete root: %w", err)
	}
	return s.del(rootKey(path), true)
}

// RootRecords calls fn for every root and mount record, sorted by path.
func (s *Store) RootRecords(fn func(RootRecord) error) error {
	return s.scan([]byte{pfxRoot}, false, func(k, v []byte) error {
		var r RootRecord
		if len(k) < 2 || json.Unmarshal(v, &r) != nil {
			return s.undecodable("root", k)
		}
		r.Path = string(k[1:])
		return fn(r)
	})
}

// CountBelow counts the file records strictly below dir, stopping at limit
// when limit > 0 (then the result is min(count, limit)).
func (s *Store) CountBelow(dir string, limit int) (int, error) {
	if err := checkPath(dir); err != nil {
		return 0, fmt.Errorf("state db count: %w", err)
	}
	n := 0
	count := func(k, _ []byte) error {
		if p, ok := pathFromFileKey(k); ok && p == dir {
			return nil // "/" sits under its own prefix
		}
		if n++; limit > 0 && n >= limit {
			return errStop
		}
		return nil
	}
	if dir == "/" {
		return n, s.scan([]byte{pfxFile}, true, count)
	}
	if err := s.scan(dirPrefix(dir), true, count); err != nil || (limit > 0 && n >= limit) {
		return n, err
	}
	deeper := append([]byte{pfxFile}, dir...)
	return n, s.scan(append(deeper, '/'), true, count)
}

// Refusal kinds: why a group, or a peer, got nothing this cycle.
const (
	RefusedRootMissing    = "root-missing"      // an include root that had tracked entries is gone
	RefusedRootEmpty      = "root-empty"        // ... is an empty directory now
	RefusedRootOtherFS    = "root-other-fs"     // ... is on another file system now
	RefusedRootUnreadable = "root-unreadable"   // ... cannot be examined (EIO, ESTALE, EACCES)
	RefusedMountChanged   = "mount-changed"     // a tracked directory below a root changed file system
	RefusedMassDelete     = "mass-delete"       // one cycle would delete more than the safety block allows
	RefusedPeerRoot       = "peer-root-changed" // the receiver refused: its include root changed file system
)

// Refusal is one reason a sync was held back. It is loud: the CLI fails,
// notify runs, monitor reports degraded and status lists it until the
// cause goes away or an admin runs Override.
type Refusal struct {
	Kind     string    `json:"kind"`
	Path     string    `json:"path,omitempty"`   // the include root or mount point
	Groups   []string  `json:"groups,omitempty"` // the groups whose push was skipped
	Peer     string    `json:"peer,omitempty"`   // the peer that refused (peer-root-changed)
	Reason   string    `json:"reason"`
	Override string    `json:"override"` // the command that lifts it, when it is deliberate
	Count    int       `json:"count,omitempty"`
	Since    time.Time `json:"since"`
}

// Key identifies a refusal across cycles.
func (r Refusal) Key() string {
	return r.Kind + "\x00" + r.Path + "\x00" + r.Peer + "\x00" + strings.Join(r.Groups, ",")
}

// String is the one line shown to an admin: what, where, why, and the way out.
func (r Refusal) String() string {
	var b strings.Builder
	b.WriteString("refused")
	if r.Path != "" {
		fmt.Fprintf(&b, " %s", r.Path)
	}
	if len(r.Groups) > 0 {
		fmt.Fprintf(&b, " (group %s)", strings.Join(r.Groups, ", "))
	}
	if r.Peer != "" {
		fmt.Fprintf(&b, " by %s", r.Peer)
	}
	fmt.Fprintf(&b, ": %s", r.Reason)
	switch {
	case r.Override != "" && r.Peer != "":
		fmt.Fprintf(&b, "; if this is intended, run '%s' on %s", r.Override, r.Peer)
	case r.Override != "":
		fmt.Fprintf(&b, "; if this is intended, run '%s'", r.Override)
	}
	return b.String()
}

// Refusals returns the refusals recorded by the last cycle.
func (s *Store) Refusals() ([]Refusal, error) {
	var rs []Refusal
	if _, err := s.getJSON([]byte{pfxRefusals}, &rs); err != nil {
		return nil, err
	}
	return rs, nil
}

// SetRefusals replaces the recorded refusals (durable). A refusal already
// recorded keeps its Since; the ones not recorded before are returned, so
// the caller notifies once per refusal, not once per cycle.
func (s *Store) SetRefusals(rs []Refusal, now time.Time) (fresh []Refusal, err error) {
	old, err := s.Refusals()
	if err != nil {
		return nil, err
	}
	since := map[string]time.Time{}
	for _, r := range old {
		since[r.Key()] = r.Since
	}
	out := make([]Refusal, len(rs))
	for i, r := range rs {
		if t, ok := since[r.Key()]; ok {
			r.Since = t
		} else {
			r.Since = now
			fresh = append(fresh, r)
		}
		out[i] = r
	}
	if len(out) == 0 {
		if len(old) == 0 {
			return nil, nil
		}
		return nil, s.del([]byte{pfxRefusals}, true)
	}
	return fresh, s.putJSON([]byte{pfxRefusals}, out, true)
}

// deleteEvent is a number of deletions pushed at a time.
type deleteEvent struct {
	Ns int64 `json:"ns"`
	N  int   `json:"n"`
}

// RecentDeletes sums the deletions of group pushed to peer after since.
func (s *Store) RecentDeletes(peer, group string, since time.Time) (int, error) {
	var evs []deleteEvent
	if _, err := s.getJSON(pairKey(pfxDeletes, peer, group), &evs); err != nil {
		return 0, err
	}
	n := 0
	for _, e := range evs {
		if e.Ns > since.UnixNano() {
			n += e.N
		}
	}
	return n, nil
}

// AddDeletes records n deletions of group pushed to peer at now, dropping
// events older than keep. n == 0 only prunes; a negative n forgets all.
func (s *Store) AddDeletes(peer, group string, n int, now time.Time, keep time.Duration) error {
	if err := checkName("peer", peer); err != nil {
		return fmt.Errorf("state db add deletes: %w", err)
	}
	key := pairKey(pfxDeletes, peer, group)
	s.mu.Lock()
	defer s.mu.Unlock()
	var evs []deleteEvent
	if n >= 0 {
		if _, err := s.getJSON(key, &evs); err != nil {
			return err
		}
	}
	var out []deleteEvent
	for _, e := range evs {
		if e.Ns > now.Add(-keep).UnixNano() {
			out = append(out, e)
		}
	}
	if n > 0 {
		out = append(out, deleteEvent{Ns: now.UnixNano(), N: n})
	}
	if len(out) == 0 {
		if len(evs) == 0 && n >= 0 {
			return nil
		}
		return s.del(key, false)
	}
	data, err := json.Marshal(out)
	if err != nil {
		return err
	}
	return s.update(false, func(txn *badger.Txn) error { return txn.Set(key, data) })
}
