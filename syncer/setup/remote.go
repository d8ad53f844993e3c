package setup

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"

	"ocf-csync/syncer/config"
	"ocf-csync/syncer/transport"
)

// Admin is the administrator's own SSH login that Init --install and
// PushConfig use: the cluster identity is pinned to `serve` (or to SFTP)
// on every node and cannot write files there.
type Admin struct {
	User         string // default: the config's ssh user
	IdentityFile string // default: ssh-agent, then ~/.ssh/id_ed25519, id_ecdsa, id_rsa
}

// DefaultAuthorizedKeys is where the authorized_keys lines go on each node,
// relative to the login's home: sshd's default AuthorizedKeysFile.
const DefaultAuthorizedKeys = ".ssh/authorized_keys"

// hostList is every host of the config, once, in config order.
func hostList(cfg *config.Config) []config.Host {
	var hs []config.Host
	for _, g := range cfg.Groups {
		for _, h := range g.Hosts {
			if !slices.ContainsFunc(hs, func(o config.Host) bool { return o.Name == h.Name }) {
				hs = append(hs, h)
			}
		}
	}
	return hs
}

// pusher reports whether host name may push in some group (a master
// there): it needs the cluster identity and known_hosts.
func pusher(cfg *config.Config, name string) bool {
	for _, g := range cfg.Groups {
		for _, h := range g.Hosts {
			if h.Name == name && !h.Slave {
				return true
			}
		}
	}
	return false
}

// adminIdentity picks the key file for the admin login.
func (a Admin) identity() string {
	if a.IdentityFile != "" {
		return a.IdentityFile
	}
	if os.Getenv("SSH_AUTH_SOCK") != "" {
		return "" // the agent's keys
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
		p := filepath.Join(home, ".ssh", n)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// dialAdmin opens an SFTP session to h as the administrator, checking its
// host key against the cluster's known_hosts file.
func dialAdmin(ctx context.Context, cfg *config.Config, a Admin, h config.Host, log *slog.Logger) (*transport.SFTP, error) {
	user := a.User
	if user == "" {
		user = cfg.SSH.User
	}
	p := transport.Peer{Name: h.Name, Addr: h.Addr, Port: cfg.SSH.Port, User: user, IdentityFile: a.identity(),
		KnownHostsFile: cfg.SSH.KnownHosts, ConnectTimeout: cfg.SSH.ConnectTimeout, Keepalive: cfg.SSH.Keepalive}
	conn, err := transport.Dial(ctx, p, log)
	if err != nil {
		return nil, fmt.Errorf("log in to %s as the administrator (%s): %w", h.Name, user, err)
	}
	s, err := conn.SFTP()
	if err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

// addresses resolves every host's address to IPs (sshd matches from=
// against the client's IP unless UseDNS is on) and adds the cluster IP.
func addresses(ctx context.Context, cfg *config.Config) ([]string, error) {
	var out []string
	add := func(ip string) {
		if !slices.Contains(out, ip) {
			out = append(out, ip)
		}
	}
	for _, h := range hostList(cfg) {
		if ip := net.ParseIP(h.Addr); ip != nil {
			add(ip.String())
			continue
		}
		ips, err := net.DefaultResolver.LookupHost(ctx, h.Addr)
		if err != nil || len(ips) == 0 {
			return nil, fmt.Errorf("resolve the address %q of host %s for the authorized_keys from= list: %v (sshd matches from= against IP addresses; fix DNS or /etc/hosts, or write host %s@IP in the config)", h.Addr, h.Name, err, h.Name)
		}
		for _, ip := range ips {
			add(ip)
		}
	}
	if cfg.HA.ClusterIP != "" {
		add(cfg.HA.ClusterIP)
	}
	return out, nil
}

// DefaultConfig is the config path a forced `serve` reads by itself.
const DefaultConfig = "/etc/ocf-csync.cfg"

// AuthorizedKeysLine is the line that lets the cluster identity (pub, in
// authorized_keys form) in on a node: pinned to the helper (or, on an SFTP
// target, to internal-sftp), restrict, and only from the cluster's
// addresses.
func AuthorizedKeysLine(cfg *config.Config, configPath string, sftpTarget bool, from []string, pub string) string {
	cmd := cfg.SSH.RemoteCommand
	if configPath != "" && absPath(configPath) != DefaultConfig {
		cmd += " --config " + transport.ShellQuote(absPath(configPath))
	}
	if sftpTarget {
		cmd = "internal-sftp"
	}
	return fmt.Sprintf(`command="%s",restrict,from="%s" %s`, strings.ReplaceAll(cmd, `"`, `\"`), strings.Join(from, ","), pub)
}

// mergeAuthorized puts line into an authorized_keys file's content: a
// line with the same key is replaced (once; duplicates of it dropped),
// else the line is appended. changed says whether anything changed.
func mergeAuthorized(content []byte, line string, key ssh.PublicKey) (out []byte, changed bool) {
	blob := string(key.Marshal())
	var lines []string
	found := false
	text := strings.TrimSuffix(string(content), "\n")
	if text != "" {
		lines = strings.Split(text, "\n")
	}
	var kept []string
	for _, l := range lines {
		if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(l)); err == nil && string(k.Marshal()) == blob {
			if found {
				changed = true
				continue
			}
			found = true
			if l != line {
				changed = true
			}
			kept = append(kept, line)
			continue
		}
		kept = append(kept, l)
	}
	if !found {
		kept = append(kept, line)
		changed = true
	}
	return []byte(strings.Join(kept, "\n") + "\n"), changed
}

// expandPath fills %n (node name), %u (login user) and %% in a remote path.
func expandPath(p, node, user string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+1 < len(p) {
			switch p[i+1] {
			case 'n':
				b.WriteString(node)
				i++
				continue
			case 'u':
				b.WriteString(user)
				i++
				continue
			case '%':
				b.WriteByte('%')
				i++
				continue
			}
		}
		b.WriteByte(p[i])
	}
	return b.String()
}
