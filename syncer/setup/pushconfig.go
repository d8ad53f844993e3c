package setup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"ocf-csync/syncer/config"
	"ocf-csync/syncer/transport"
)

// PushOptions drive PushConfig.
type PushOptions struct {
	Config     *config.Config
	ConfigPath string
	Node       string   // this node
	StateDir   string   // where the record of what was pushed lives
	Peers      []string // empty: every other node that runs ocf-csync
	Force      bool     // overwrite a peer's file that differs from what this node last pushed
	Admin      Admin
	Out        io.Writer
	Log        *slog.Logger
}

// ErrPeerEdited: a peer's file differs from what this node last pushed.
var ErrPeerEdited = errors.New("a peer's file was changed there")

// maxConfigFile bounds what push-config reads back from a peer.
const maxConfigFile = 4 << 20

// pushedFile is the record of what was pushed: per peer, per path, the
// sha256 of the content.
const pushedFile = "push-config.json"

// pushItem is one file for one peer.
type pushItem struct {
	path   string
	data   []byte
	fi     fs.FileInfo
	isConf bool
}

// PushConfig copies the config (with its included files), the group keys
// of the peer's groups, and for a node that may push the cluster identity
// and known_hosts to each peer over SFTP: atomically (posix-rename), with
// the local owner and mode. A peer's file that differs from what this node
// last pushed there is not overwritten unless Force.
func PushConfig(ctx context.Context, o PushOptions) (rep PushReport, err error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	cfg := o.Config
	rep.Files = []PushedFile{}
	peers, err := pushPeers(cfg, o.Node, o.Peers)
	if err != nil {
		return rep, err
	}
	rec, err := loadPushed(o.StateDir)
	if err != nil {
		return rep, err
	}
	var errs []error
	for _, h := range peers {
		items, err := pushItems(cfg, h.Name)
		if err != nil {
			return rep, err
		}
		if err := pushPeer(ctx, o, h, items, rec, &rep); err != nil {
			errs = append(errs, err)
		}
		// Record what reached each peer, even when a later one fails.
		if err := savePushed(o.StateDir, rec); err != nil {
			return rep, err
		}
	}
	return rep, errors.Join(errs...)
}

// PushReport is what push-config did (push-config --json).
type PushReport struct {
	Changed bool         `json:"changed"`
	Files   []PushedFile `json:"files"`
}

// PushedFile is one file on one peer.
type PushedFile struct {
	Host   string `json:"host"`
	Path   string `json:"path"`
	Status string `json:"status"` // created, updated, metadata, up_to_date, refused
	Mode   string `json:"mode"`   // octal, as pushed
	UID    uint32 `json:"uid"`
	GID    uint32 `json:"gid"`
	Diff   string `json:"diff,omitempty"` // diff -u of a changed or refused config file
}

// pushPeers are the named peers, or every other node that runs ocf-csync.
func pushPeers(cfg *config.Config, self string, names []string) ([]config.Host, error) {
	all := hostList(cfg)
	var out []config.Host
	if len(names) == 0 {
		for _, h := range all {
			if h.Name != self && !cfg.SSH.IsSFTP(h.Name) {
				out = append(out, h)
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("no peer to push to: the config lists no other node that runs ocf-csync")
		}
		return out, nil
	}
	for _, n := range names {
		n = strings.ToLower(n)
		i := -1
		for j, h := range all {
			if h.Name == n {
				i = j
			}
		}
		switch {
		case i < 0:
			return nil, fmt.Errorf("%s is no host of the config (hosts: %s)", n, hostNames(all))
		case n == self:
			return nil, fmt.Errorf("%s is this node", n)
		case cfg.SSH.IsSFTP(n):
			return nil, fmt.Errorf("%s is an SFTP target (ssh sftp-hosts): it runs no ocf-csync and needs no config", n)
		}
		out = append(out, all[i])
	}
	return out, nil
}

// pushItems lists what peer gets: the config files, the keys of its
// groups, and (if it may push) the identity and known_hosts.
func pushItems(cfg *config.Config, peer string) ([]pushItem, error) {
	var files []string
	conf := map[string]bool{}
	for _, f := range cfg.Files {
		files = append(files, absPath(f))
		conf[absPath(f)] = true
	}
	for _, g := range cfg.Groups {
		if containsHost(g.Hosts, peer) && !contains(files, absPath(g.Key)) {
			files = append(files, absPath(g.Key))
		}
	}
	if pusher(cfg, peer) {
		files = append(files, cfg.SSH.Identity)
		if _, err := os.Stat(cfg.SSH.Identity + ".pub"); err == nil {
			files = append(files, cfg.SSH.Identity+".pub")
		}
		files = append(files, cfg.SSH.KnownHosts)
	}
	var items []pushItem
	for _, f := range files {
		fi, err := os.Lstat(f)
		if err != nil {
			return nil, fmt.Errorf("push-config: %w (run ocf-csync init first)", err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("push-config: %s is not a regular file", f)
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("push-config: %w", err)
		}
		items = append(items, pushItem{path: f, data: data, fi: fi, isConf: conf[f]})
	}
	return items, nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func pushPeer(ctx context.Context, o PushOptions, h config.Host, items []pushItem, rec map[string]map[string]string, rep *PushReport) error {
	w := &reporter{out: o.Out}
	s, err := dialAdmin(ctx, o.Config, o.Admin, h, o.Log.With("peer", h.Name))
	if err != nil {
		return err
	}
	defer s.Close()
	if rec[h.Name] == nil {
		rec[h.Name] = map[string]string{}
	}
	var refused []string
	for _, it := range items {
		sum := hashHex(it.data)
		st, err := s.Lstat(it.path)
		if err != nil {
			return err
		}
		var old []byte
		switch {
		case st.IsSymlink() || (st.Exists && !st.IsRegular()):
			return fmt.Errorf("%s on %s is not a regular file (%s): not touched", it.path, h.Name, st.Mode.Type())
		case st.Exists:
			if old, err = s.ReadFile(it.path, maxConfigFile); err != nil {
				return err
			}
		}
		uid, gid := ownerOf(it.fi)
		pf := PushedFile{Host: h.Name, Path: it.path, Status: "up_to_date", Mode: fmt.Sprintf("%04o", it.fi.Mode().Perm()), UID: uid, GID: gid}
		a := transport.Attrs{SetOwner: true, UID: uid, GID: gid, SetMode: true, Mode: it.fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)}
		sameMeta := st.Exists && st.UID == uid && st.GID == gid && st.Mode&fs.ModePerm == it.fi.Mode().Perm()
		if st.Exists && hashHex(old) == sum {
			rec[h.Name][it.path] = sum
			if !sameMeta {
				if err := s.SetAttrs(it.path, a); err != nil {
					return err
				}
				w.did(Step{}, "%s: %s: owner and mode set (%04o %d:%d)", h.Name, it.path, a.Mode.Perm(), uid, gid)
				pf.Status = "metadata"
				rep.Changed = true
			}
			rep.Files = append(rep.Files, pf)
			continue
		}
		last, pushedBefore := rec[h.Name][it.path]
		if st.Exists && (!pushedBefore || hashHex(old) != last) && !o.Force {
			why := "it differs from what this node last pushed there"
			if !pushedBefore {
				why = "this node never pushed it, and it differs from this node's"
			}
			w.line("%s: %s: REFUSED: %s (changed on %s?); run with --force to overwrite it", h.Name, it.path, why, h.Name)
			if it.isConf {
				pf.Diff = printDiff(w, h.Name, it.path, old, it.data)
			}
			pf.Status = "refused"
			rep.Files = append(rep.Files, pf)
			refused = append(refused, it.path)
			continue
		}
		if err := mkdirParents(s, path.Dir(it.path)); err != nil {
			return err
		}
		if err := s.WriteFileAtomic(it.path, it.data, a); err != nil {
			return err
		}
		rec[h.Name][it.path] = sum
		verb := "created"
		if st.Exists {
			verb = "updated"
		}
		w.did(Step{}, "%s: %s: %s (%04o %d:%d)", h.Name, it.path, verb, a.Mode.Perm(), uid, gid)
		if it.isConf && st.Exists {
			pf.Diff = printDiff(w, h.Name, it.path, old, it.data)
		}
		pf.Status = verb
		rep.Files = append(rep.Files, pf)
		rep.Changed = true
	}
	if len(refused) > 0 {
		return fmt.Errorf("%w: %s on %s: not overwritten (see above; --force overwrites)", ErrPeerEdited, strings.Join(refused, ", "), h.Name)
	}
	if w.n == 0 {
		w.line("%s: up to date (%d files)", h.Name, len(items))
	}
	return nil
}

// mkdirParents makes the missing directories above a pushed file with the
// local directories' modes (0700 where there is none here).
func mkdirParents(s *transport.SFTP, d string) error {
	if d == "/" {
		return nil
	}
	st, err := s.Lstat(d)
	if err != nil {
		return err
	}
	if st.IsDir() {
		return nil
	}
	if st.Exists {
		return fmt.Errorf("%s on %s is not a directory", d, s.Peer())
	}
	if err := mkdirParents(s, path.Dir(d)); err != nil {
		return err
	}
	if err := s.Mkdir(d); err != nil {
		return err
	}
	mode := fs.FileMode(0o700)
	if fi, err := os.Stat(d); err == nil {
		mode = fi.Mode().Perm()
	}
	return s.SetAttrs(d, transport.Attrs{SetMode: true, Mode: mode})
}

func ownerOf(fi fs.FileInfo) (uint32, uint32) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid, st.Gid
	}
	return 0, 0
}

func hashHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// printDiff shows how a peer's config changes (diff -u, as `ocf-csync
// diff`) and returns the diff.
func printDiff(w *reporter, peer, p string, old, cur []byte) string {
	dir, err := os.MkdirTemp("", "ocf-csync-push-")
	if err != nil {
		return ""
	}
	defer os.RemoveAll(dir)
	a, b := filepath.Join(dir, "peer"), filepath.Join(dir, "here")
	if os.WriteFile(a, old, 0o600) != nil || os.WriteFile(b, cur, 0o600) != nil {
		return ""
	}
	var out bytes.Buffer
	cmd := exec.Command("diff", "-u", "--label", peer+":"+p, "--label", "this node:"+p, a, b)
	cmd.Stdout = &out
	_ = cmd.Run() // exit 1: they differ
	for _, l := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
		w.line("    %s", l)
	}
	return out.String()
}

func loadPushed(dir string) (map[string]map[string]string, error) {
	rec := map[string]map[string]string{}
	data, err := os.ReadFile(filepath.Join(dir, pushedFile))
	if errors.Is(err, os.ErrNotExist) {
		return rec, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, pushedFile), err)
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("read %s: %w (remove it: every peer's files then count as never pushed)", filepath.Join(dir, pushedFile), err)
	}
	return rec, nil
}

func savePushed(dir string, rec map[string]map[string]string) error {
	if _, err := mkdirPrivate(dir); err != nil {
		return err
	}
	data, _ := json.MarshalIndent(rec, "", "  ")
	p := filepath.Join(dir, pushedFile)
	if err := os.WriteFile(p+".tmp", append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("record pushed files: %w", err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		return fmt.Errorf("record pushed files: %w", err)
	}
	return nil
}
