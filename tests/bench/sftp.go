package main

// D1 to an SFTP target: the initial push of a fresh D1 tree to a node2 that
// is an SFTP receive-only slave (ssh sftp-hosts: sshd's internal-sftp, no
// ocf-csync helper), beside rsync into a fresh target of its own.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"ocf-csync/tests/cluster"
)

func init() { registerExtra("sftp", runSFTP) }

const (
	sftpSrc    = "/srv/ocf-csync/d1-sftp"       // a fresh D1 on node1
	sftpTarget = "/srv/ocf-csync/sftp/d1"       // ocf-csync's copy on node2 (a prefix maps it)
	sftpRsync  = "/srv/ocf-csync/rsync/d1-sftp" // rsync's copy on node2
	sftpCfg    = "/etc/ocf-csync/sftp-d1.cfg"
	sftpID     = "D1-sftp"
)

// sftpConfig maps the tree to its own target on node2 through a prefix.
func sftpConfig() string {
	return fmt.Sprintf(`prefix d1 {
  on node1: %s;
  on node2: %s;
}
group d1sftp {
  host node1 (node2);
  key %s;
  include %%d1%%;
}
ssh {
  identity %s;
  known-hosts %s;
  sftp-hosts node2;
}
`, sftpSrc, sftpTarget, benchKey, cluster.ClientKey, cluster.KnownHosts)
}

func runSFTP(ctx context.Context, b *bench) error {
	n1, n2 := b.r.n1, b.r.n2
	if err := os.WriteFile(n1.Path(sftpCfg), []byte(sftpConfig()), 0o600); err != nil {
		return fmt.Errorf("sftp row: %w", err)
	}
	for _, p := range []string{n1.Path(sftpSrc), n2.Path(sftpTarget), n2.Path(sftpRsync)} {
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("sftp row: %w", err)
		}
	}
	defer func() {
		// Set aside, not deleted: the rows after this one create files.
		setAside(n1, sftpSrc)
		setAside(n2, sftpTarget, sftpRsync)
	}()
	if err := os.MkdirAll(n2.Path("/srv/ocf-csync/sftp"), 0o755); err != nil {
		return err
	}
	logf("%s: generating D1: %d files in %d directories", sftpID, b.p.files, b.p.dirs)
	if err := genD1(n1.Path(sftpSrc), b.p.files, b.p.dirs); err != nil {
		return err
	}
	src, err := manifest(n1.Path(sftpSrc))
	if err != nil {
		return err
	}
	sec := b.rep.section(sftpID)
	b.rep.setTitle(sftpID, "D1 to an SFTP target: initial push to a node with sshd only (internal-sftp, no ocf-csync there), beside rsync (no budget)")
	rsync := job{tool: toolRsync, timeout: b.p.timeout, receiver: viaSSH,
		args: []string{"rsync", "-a", "--delete", "-e", sshCmd(), "--rsync-path", "/usr/bin/time -o " + timeFile + " -f " + timeFormat + " rsync",
			sftpSrc + "/", "node2:" + sftpRsync + "/"}}
	// internal-sftp runs inside the sshd session: sshd's reaped CPU counts
	// it; there is no helper for /usr/bin/time to measure.
	ocf := job{tool: toolOCF, timeout: b.p.timeout, receiver: viaSSH, mayNotConnect: true, env: ocfEnv(),
		args: []string{"ocf-csync", "--config", sftpCfg, "--node", "node1", "sync"}}
	for _, j := range []job{rsync, ocf} {
		if err := ctx.Err(); err != nil {
			return err
		}
		logf("%s: %s", sftpID, strings.Join(j.args, " "))
		s := b.r.measure(ctx, j)
		if s.err == nil {
			target := sftpRsync
			if j.tool == toolOCF {
				target = sftpTarget
			}
			if err := verifySeconds(src, n2.Path(target)); err != nil {
				s.err = fmt.Errorf("wrong result: %w", err)
			}
		}
		if s.err != nil {
			logf("%s: %s FAIL: %v", sftpID, j.tool, s.err)
		} else {
			logf("%s: %s %.2fs, %s on the wire", sftpID, j.tool, s.wall.Seconds(), bytesIEC(s.sent+s.recv))
		}
		sec.samples = append(sec.samples, s)
		sec.commands = append(sec.commands, cmdLine(j))
	}
	if r, o := sec.samples[0], sec.samples[1]; r.err == nil && o.err == nil {
		sec.notes = append(sec.notes, fmt.Sprintf("ocf-csync over SFTP / rsync: wall %.2f×, wire %.2f×, sender+receiver CPU %.2f×.",
			o.wall.Seconds()/r.wall.Seconds(), float64(o.sent+o.recv)/float64(max(1, r.sent+r.recv)),
			(o.clientCPU+o.serverCPU).Seconds()/max(0.001, (r.clientCPU+r.serverCPU).Seconds())))
	}
	sec.notes = append(sec.notes, "SFTP v3 carries mtimes in whole seconds: both targets are checked against the source with mtimes to the second. The receiver CPU is sshd's (internal-sftp); ocf-csync runs nothing there, hence no helper figures. One run each (an initial push).")
	return nil
}

// verifySeconds is verify with mtimes compared to the second.
func verifySeconds(src map[string]entry, target string) error {
	got, err := manifest(target)
	if err != nil {
		return err
	}
	trunc := func(m map[string]entry) map[string]entry {
		out := make(map[string]entry, len(m))
		for k, e := range m {
			e.mtime = time.Unix(0, e.mtime).Unix() * 1e9
			out[k] = e
		}
		return out
	}
	if n, diffs := diffManifests(trunc(src), trunc(got), 5); n > 0 {
		return fmt.Errorf("%d entries differ from the source, e.g. %s", n, strings.Join(diffs, "; "))
	}
	return nil
}
