package ra

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"ocf-csync/ha"
	"os"
	"path/filepath"
	"strings"

	"ocf-csync/ocf"
	"ocf-csync/syncer/config"
)

// Check levels of validate-all (OCF_CHECK_LEVEL).
const (
	LevelParams = 0  // the parameters alone
	LevelHost   = 10 // also this host: config file, keys, state dir, binary
)

// validate checks p. At LevelParams only what ParseParams found; at
// LevelHost also this host. It fills p.Node and returns the loaded config.
// Errors are *ocf.Error: 6 for inherently bad parameters or config, 5 for
// something missing here, 2 for a value wrong on this host.
func (a *Agent) validate(ctx context.Context, p *Params, perr error, level int) (*config.NodeView, error) {
	if perr != nil {
		return nil, perr
	}
	if level < LevelHost {
		return nil, nil
	}
	cfg, err := config.Load(p.Config)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, &ocf.Error{Status: ocf.ErrInstalled, Reason: fmt.Sprintf("config file %s not found on this node (copy it from the other nodes; a new cluster starts with 'ocf-csync init' or %s)", p.Config, config.ExampleFile)}
	case errors.Is(err, config.ErrInvalid):
		// The config package's messages carry file:line:col.
		return nil, &ocf.Error{Status: ocf.ErrConfigured, Reason: "invalid config: " + err.Error()}
	case err != nil:
		return nil, &ocf.Error{Status: ocf.ErrInstalled, Reason: fmt.Sprintf("read config %s: %v", p.Config, err)}
	}
	if p.Node == "" {
		n, err := a.NodeName(ctx)
		if err != nil {
			return nil, &ocf.Error{Status: ocf.ErrArgs, Reason: err.Error() + " (set the node parameter)"}
		}
		p.Node = n
	}
	view, err := cfg.Node(p.Node)
	if err != nil {
		return nil, &ocf.Error{Status: ocf.ErrArgs, Reason: err.Error()}
	}
	needSSH := false
	for _, g := range view.Groups {
		if err := readable(g.Key); err != nil {
			return nil, &ocf.Error{Status: ocf.ErrInstalled, Reason: fmt.Sprintf("key file of group %s: %v (copy it from another node, or make one with 'ocf-csync keygen')", g.Name, err)}
		}
		if len(g.Peers()) > 0 {
			needSSH = true
		}
	}
	// What parses but must not run (config check's lint): a weak or
	// exposed key, backups inside an include, %% inside quotes.
	var lintErrs []string
	for _, i := range view.Lint() {
		if i.Severity == config.SeverityError {
			lintErrs = append(lintErrs, i.String())
		}
	}
	if len(lintErrs) > 0 {
		return nil, &ocf.Error{Status: ocf.ErrConfigured, Reason: "config: " + strings.Join(lintErrs, "; ") + " (see 'ocf-csync config check')"}
	}
	if needSSH {
		if a.Env.Get("SSH_AUTH_SOCK") == "" {
			if err := readable(cfg.SSH.Identity); err != nil {
				return nil, &ocf.Error{Status: ocf.ErrInstalled, Reason: fmt.Sprintf("SSH identity file: %v (create it with: ssh-keygen -t ed25519 -N '' -f %s)", err, cfg.SSH.Identity)}
			}
		}
		if !cfg.SSH.AcceptNew {
			if err := readable(cfg.SSH.KnownHosts); err != nil {
				return nil, &ocf.Error{Status: ocf.ErrInstalled, Reason: fmt.Sprintf("known_hosts file: %v (record the peers' host keys with 'ocf-csync trust-host PEER')", err)}
			}
		}
	}
	if err := writableDir(p.stateDir()); err != nil {
		return nil, &ocf.Error{Status: ocf.ErrArgs, Reason: fmt.Sprintf("state_dir: %v", err)}
	}
	if _, err := a.binary(p); err != nil {
		return nil, &ocf.Error{Status: ocf.ErrInstalled, Reason: err.Error()}
	}
	return view, nil
}

// readable checks that path is a readable regular file.
func readable(path string) error {
	if path == "" {
		return errors.New("not configured")
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	return nil
}

// writableDir checks that dir is a writable directory, or can be created:
// its nearest existing ancestor is a writable directory. It creates nothing
// but a probe file that it removes.
func writableDir(dir string) error {
	d := filepath.Clean(dir)
	for {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s is not a directory", d)
			}
			f, err := os.CreateTemp(d, ".ocf-csync-probe-*")
			if err != nil {
				return fmt.Errorf("%s is not writable: %w", d, err)
			}
			f.Close()
			os.Remove(f.Name())
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		parent := filepath.Dir(d)
		if parent == d {
			return err
		}
		d = parent
	}
}

// binary is the ocf-csync binary the daemon runs: ocf_csync_binary, else this
// executable, with links resolved (a link named mirror would select the
// agent mode).
func (a *Agent) binary(p *Params) (string, error) {
	b := p.Binary
	if b == "" {
		self, err := a.Self()
		if err != nil {
			return "", fmt.Errorf("find this executable: %w (set ocf_csync_binary)", err)
		}
		b = self
	}
	r, err := filepath.EvalSymlinks(b)
	if err != nil {
		return "", fmt.Errorf("ocf-csync binary: %w", err)
	}
	fi, err := os.Stat(r)
	if err != nil {
		return "", fmt.Errorf("ocf-csync binary: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("ocf-csync binary %s is not an executable file", r)
	}
	return r, nil
}

// defaultNodeName is crm_node -n, then the host name (DESIGN §2).
func defaultNodeName(ctx context.Context) (string, error) { return ha.LocalNodeName(ctx) }
