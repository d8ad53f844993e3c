package setup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"

	"ocf-csync/syncer/config"
	"ocf-csync/syncer/transport"
)

// ErrUnconfirmed: a host key is new and nobody confirmed its fingerprint.
var ErrUnconfirmed = errors.New("host key not confirmed")

// InitOptions drive Init.
type InitOptions struct {
	Config     *config.Config
	ConfigPath string
	Node       string // this node's name
	StateDir   string
	// Fingerprints are the expected SHA256:… fingerprints by host name.
	Fingerprints map[string]string
	// AcceptNew trusts host keys on first use (an explicit opt-in).
	AcceptNew bool
	// Confirm asks the administrator about a new host key; nil: nobody to
	// ask (keys must come with Fingerprints or AcceptNew).
	Confirm func(host, addr, keyType, fingerprint string) (bool, error)
	// Install writes the authorized_keys lines on every node over SFTP
	// through the Admin login; AuthorizedKeys is the remote file (relative
	// to the login's home; %n is the node name, %u the user).
	Install        bool
	Admin          Admin
	AuthorizedKeys string
	Out            io.Writer
	Log            *slog.Logger
}

// hostKey is what phase 1 learned about one host's key.
type hostKey struct {
	host  config.Host
	key   ssh.PublicKey
	known bool // recorded already
	how   string
}

// Init makes what is missing: state dir, cluster identity, group keys,
// known_hosts entries (confirmed fingerprints only), and with Install the
// authorized_keys line on every node. Everything that can be refused is
// checked before anything is written: a wrong fingerprint writes nothing.
func Init(ctx context.Context, o InitOptions) (rep InitReport, err error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.AuthorizedKeys == "" {
		o.AuthorizedKeys = DefaultAuthorizedKeys
	}
	cfg := o.Config
	w := &reporter{out: o.Out}
	defer func() {
		rep.Changed, rep.Steps = w.n > 0, orEmpty(w.steps)
		rep.AuthorizedKeys = orEmpty(rep.AuthorizedKeys)
	}()

	// Phase 1: check everything; write nothing.
	hosts := hostList(cfg)
	for name := range o.Fingerprints {
		if !containsHost(hosts, name) {
			return rep, fmt.Errorf("--fingerprint names %s, which is no host of the config (hosts: %s)", name, hostNames(hosts))
		}
	}
	from, err := addresses(ctx, cfg)
	if err != nil {
		return rep, err
	}
	keys, err := checkHostKeys(ctx, o, hosts)
	if err != nil {
		return rep, fmt.Errorf("%w\nnothing was written", err)
	}
	if _, err := os.Stat(cfg.SSH.Identity); err == nil {
		if _, _, err := identityPublic(cfg.SSH.Identity); err != nil {
			return rep, err
		}
	}

	// Phase 2: local files, never overwriting.
	if made, err := mkdirPrivate(o.StateDir); err != nil {
		return rep, err
	} else if made {
		w.did(Step{Action: "created_state_dir", Path: o.StateDir}, "created state directory %s", o.StateDir)
	}
	if err := ensureIdentity(cfg, w); err != nil {
		return rep, err
	}
	seen := map[string]bool{}
	for _, g := range cfg.Groups {
		if seen[g.Key] || !containsHost(g.Hosts, o.Node) {
			continue
		}
		seen[g.Key] = true
		if _, err := os.Stat(g.Key); err == nil {
			continue
		}
		if _, err := mkdirPrivate(filepath.Dir(g.Key)); err != nil {
			return rep, err
		}
		if err := WriteGroupKey(g.Key); err != nil {
			return rep, err
		}
		w.did(Step{Action: "created_group_key", Path: g.Key, Detail: "group " + g.Name}, "created key %s of group %s (0600)", g.Key, g.Name)
	}
	for _, k := range keys {
		if k.known {
			continue
		}
		if err := transport.AppendKnownHost(cfg.SSH.KnownHosts, k.host.Addr, cfg.SSH.Port, k.key); err != nil {
			return rep, err
		}
		w.did(Step{Action: "recorded_host_key", Host: k.host.Name, Path: cfg.SSH.KnownHosts,
			Detail: fmt.Sprintf("%s %s (%s)", k.key.Type(), ssh.FingerprintSHA256(k.key), k.how)}, "recorded host key of %s (%s): %s %s (%s)", k.host.Name, k.host.Addr, k.key.Type(), ssh.FingerprintSHA256(k.key), k.how)
	}

	// Phase 3: the authorized_keys lines.
	pub, pubLine, err := identityPublic(cfg.SSH.Identity)
	if err != nil {
		return rep, err
	}
	lines := map[bool]string{
		false: AuthorizedKeysLine(cfg, o.ConfigPath, false, from, pubLine),
		true:  AuthorizedKeysLine(cfg, o.ConfigPath, true, from, pubLine),
	}
	if o.Install {
		var errs []error
		for _, h := range hosts {
			changed, where, err := installLine(ctx, o, h, lines[cfg.SSH.IsSFTP(h.Name)], pub)
			switch {
			case err != nil:
				errs = append(errs, err)
			case changed:
				w.did(Step{Action: "installed_authorized_keys", Host: h.Name, Path: where}, "installed the authorized_keys line on %s (%s)", h.Name, where)
			}
		}
		if len(errs) > 0 {
			return rep, errors.Join(errs...)
		}
	}
	w.line("")
	for _, sftp := range []bool{false, true} {
		hs := filterHosts(hosts, cfg, sftp)
		if len(hs) == 0 {
			continue
		}
		rep.AuthorizedKeys = append(rep.AuthorizedKeys, AuthorizedKeys{Hosts: strings.Fields(hostNames(hs)), Line: lines[sftp]})
		w.line("authorized_keys line for the %s (%s):", map[bool]string{false: "ocf-csync nodes", true: "SFTP targets"}[sftp], hostNames(hs))
		w.line("  %s", lines[sftp])
	}
	if !o.Install {
		w.line("install them on every node (in ~%s/%s), or run again with --install", userOf(o, cfg), DefaultAuthorizedKeys)
	}
	if w.n == 0 {
		w.line("nothing to do: identity, keys, state directory, known_hosts%s were in place already", map[bool]string{true: " and authorized_keys lines"}[o.Install])
	} else {
		w.line("next: ocf-csync push-config, then ocf-csync sync")
	}
	return rep, nil
}

func userOf(o InitOptions, cfg *config.Config) string {
	if o.Admin.User != "" {
		return o.Admin.User
	}
	return cfg.SSH.User
}

func filterHosts(hs []config.Host, cfg *config.Config, sftp bool) []config.Host {
	var out []config.Host
	for _, h := range hs {
		if cfg.SSH.IsSFTP(h.Name) == sftp {
			out = append(out, h)
		}
	}
	return out
}

func containsHost(hs []config.Host, name string) bool {
	name = strings.ToLower(name)
	for _, h := range hs {
		if h.Name == name {
			return true
		}
	}
	return false
}

func hostNames(hs []config.Host) string {
	names := make([]string, len(hs))
	for i, h := range hs {
		names[i] = h.Name
	}
	return strings.Join(names, " ")
}

// checkHostKeys fetches every host's key and decides, without writing,
// whether it may be recorded: already known (and unchanged), confirmed by
// --fingerprint or interactively, or accepted with --accept-new.
func checkHostKeys(ctx context.Context, o InitOptions, hosts []config.Host) ([]hostKey, error) {
	cfg := o.Config
	var out []hostKey
	var unconfirmed []string
	for _, h := range hosts {
		known, err := transport.KnownHostKeys(cfg.SSH.KnownHosts, h.Addr, cfg.SSH.Port)
		if err != nil {
			return nil, err
		}
		key, err := transport.FetchHostKey(ctx, h.Addr, cfg.SSH.Port, cfg.SSH.ConnectTimeout)
		if err != nil {
			return nil, fmt.Errorf("read the host key of %s (%s:%d): %w", h.Name, h.Addr, cfg.SSH.Port, err)
		}
		fp := ssh.FingerprintSHA256(key)
		k := hostKey{host: h, key: key}
		want, given := o.Fingerprints[h.Name]
		if given && want != fp {
			// Also when the key is recorded already: the admin expects
			// another key than the host offers, which needs looking into.
			return nil, fmt.Errorf("host %s (%s) offers %s key %s, not the %s given with --fingerprint: refused; check the host's key (on %s: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)",
				h.Name, h.Addr, key.Type(), fp, want, h.Name)
		}
		if len(known) > 0 {
			for _, kk := range known {
				if string(kk.Marshal()) == string(key.Marshal()) {
					k.known = true
				}
			}
			if !k.known {
				return nil, fmt.Errorf("host key of %s (%s) has CHANGED: it offers %s %s, but %s records another key. This can be a man-in-the-middle attack, or the host was reinstalled; check it out of band, remove the old line and run init again",
					h.Name, h.Addr, key.Type(), fp, cfg.SSH.KnownHosts)
			}
			out = append(out, k)
			continue
		}
		switch {
		case given:
			k.how = "fingerprint given"
		case o.AcceptNew:
			k.how = "accepted on first use: --accept-new"
		case o.Confirm != nil:
			ok, err := o.Confirm(h.Name, h.Addr, key.Type(), fp)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, fmt.Errorf("host key %s of %s not confirmed: refused", fp, h.Name)
			}
			k.how = "confirmed"
		default:
			unconfirmed = append(unconfirmed, fmt.Sprintf("  %s (%s): %s %s", h.Name, h.Addr, key.Type(), fp))
			continue
		}
		out = append(out, k)
	}
	if len(unconfirmed) > 0 {
		var flags []string
		for _, u := range unconfirmed {
			f := strings.Fields(u)
			flags = append(flags, "--fingerprint "+f[0]+"="+f[len(f)-1])
		}
		return nil, fmt.Errorf("%w: these host keys are new; compare each fingerprint with the host's own (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub there), then run init on a terminal to confirm them, or give them:\n%s\n  ocf-csync init %s",
			ErrUnconfirmed, strings.Join(unconfirmed, "\n"), strings.Join(flags, " "))
	}
	return out, nil
}

// ensureIdentity creates the cluster's SSH identity when it is missing.
func ensureIdentity(cfg *config.Config, w *reporter) error {
	file := cfg.SSH.Identity
	if _, err := os.Stat(file); err == nil {
		if fi, err := os.Stat(file); err == nil && fi.Mode().Perm()&0o077 != 0 {
			w.line("warning: SSH identity %s is readable by others (%s); chmod 600 it", file, fi.Mode().Perm())
		}
		return nil
	}
	if _, err := mkdirPrivate(filepath.Dir(file)); err != nil {
		return err
	}
	priv, pub, err := newIdentity("ocf-csync@" + strings.TrimSuffix(filepath.Base(cfg.Files[0]), filepath.Ext(cfg.Files[0])))
	if err != nil {
		return err
	}
	if err := writeNew(file, priv, 0o600, "SSH identity %s exists"); err != nil {
		return err
	}
	if err := writeNew(file+".pub", []byte(pub+"\n"), 0o644, "%s exists; remove it (it does not belong to the new identity)"); err != nil {
		return err
	}
	k, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(pub))
	w.did(Step{Action: "created_identity", Path: file, Detail: "ed25519 " + ssh.FingerprintSHA256(k)}, "created the cluster's SSH identity %s (ed25519 %s, 0600)", file, ssh.FingerprintSHA256(k))
	return nil
}

// installLine puts line into h's authorized_keys through the admin login.
func installLine(ctx context.Context, o InitOptions, h config.Host, line string, key ssh.PublicKey) (bool, string, error) {
	s, err := dialAdmin(ctx, o.Config, o.Admin, h, o.Log.With("peer", h.Name))
	if err != nil {
		return false, "", err
	}
	defer s.Close()
	p := expandPath(o.AuthorizedKeys, h.Name, userOf(o, o.Config))
	if !path.IsAbs(p) {
		home, err := s.RealPath(".")
		if err != nil {
			return false, "", err
		}
		p = path.Join(home, p)
	}
	st, err := s.Lstat(p)
	if err != nil {
		return false, p, err
	}
	var content []byte
	a := transport.Attrs{SetMode: true, Mode: 0o600}
	switch {
	case st.IsSymlink() || (st.Exists && !st.IsRegular()):
		return false, p, fmt.Errorf("%s on %s is not a regular file (%s): not touched", p, h.Name, st.Mode.Type())
	case st.Exists:
		if content, err = s.ReadFile(p, 1<<20); err != nil {
			return false, p, err
		}
		a = transport.Attrs{SetOwner: true, UID: st.UID, GID: st.GID, SetMode: true, Mode: st.Mode & fs.ModePerm}
	default:
		if d, err := s.Lstat(path.Dir(p)); err != nil {
			return false, p, err
		} else if !d.Exists {
			if err := s.Mkdir(path.Dir(p)); err != nil {
				return false, p, err
			}
			if err := s.SetAttrs(path.Dir(p), transport.Attrs{SetMode: true, Mode: 0o700}); err != nil {
				return false, p, err
			}
		}
	}
	out, changed := mergeAuthorized(content, line, key)
	if !changed {
		return false, p, nil
	}
	return true, p, s.WriteFileAtomic(p, out, a)
}

// InitReport is what init did (init --json).
type InitReport struct {
	Changed        bool             `json:"changed"`
	Steps          []Step           `json:"steps"`
	AuthorizedKeys []AuthorizedKeys `json:"authorized_keys"`
}

// AuthorizedKeys is the line the hosts need.
type AuthorizedKeys struct {
	Hosts []string `json:"hosts"`
	Line  string   `json:"line"`
}

// Step is one change init made.
type Step struct {
	Action string `json:"action"` // created_state_dir, created_identity, created_group_key, recorded_host_key, installed_authorized_keys
	Host   string `json:"host,omitempty"`
	Path   string `json:"path,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// orEmpty makes a nil slice encode as [].
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// reporter prints what was done (when out is set) and keeps it.
type reporter struct {
	out   io.Writer
	n     int
	steps []Step
}

func (r *reporter) did(st Step, format string, args ...any) {
	r.n++
	r.steps = append(r.steps, st)
	r.line(format, args...)
}

func (r *reporter) line(format string, args ...any) {
	if r.out != nil {
		fmt.Fprintf(r.out, format+"\n", args...)
	}
}
