// Package netns holds the machinery that tests/cluster and tests/pcmk share
// for their throwaway clusters of network-namespace nodes: child processes
// tracked and stopped by PID (Proc, PIDRef, Terminate), the hub bridge with
// one veth per node (Network), the per-node namespace holder (StartHolder),
// sweeping a stale namespace (SweepNetns), a unique cluster tag (ClaimTag),
// SSH keys (Keygen) and flocks (LockFile).
//
// It needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and the tools ip, unshare
// and sh; Keygen needs ssh-keygen.
package netns

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Dir is where ip keeps the named network namespaces.
const Dir = "/run/netns"

// Run runs a host-side helper command and returns its stdout; the error
// carries the command line and its stderr.
func Run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// LockFile opens (creating) path and flocks it with how (syscall.LOCK_SH,
// LOCK_EX, optionally |LOCK_NB); closing the file drops the lock.
func LockFile(path string, how int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := Flock(f, how); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

// Flock flocks f with how, retrying on EINTR.
func Flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// Claim is a cluster's unique tag and what reserves it.
type Claim struct {
	Tag    string   // 5 hex digits, part of every netns name
	Subnet int      // X in 127.1.X.0/24, 1 … 250
	Dir    string   // the cluster's temp dir, dirBase/dirPrefix+Tag
	Hub    string   // nsPrefix+Tag+"hub": the hub netns name, unused
	Alive  *os.File // exclusive lock on Dir/alive; hold it until the cluster is gone
}

// ClaimTag picks a tag no other cluster uses: creating the temp dir is the
// atomic claim, the free hub netns name the second check. The dir's alive
// lock tells a sweep that the cluster is in use. Callers serialise ClaimTag
// with their sweep under a machine-wide mutex.
func ClaimTag(dirBase, dirPrefix, nsPrefix string) (*Claim, error) {
	for range 20 {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("random tag: %w", err)
		}
		v := binary.BigEndian.Uint32(b[:])
		tag := fmt.Sprintf("%05x", v&0xfffff) // 5 hex digits: 2+5+"n200" fits 15 chars
		dir := filepath.Join(dirBase, dirPrefix+tag)
		if err := os.Mkdir(dir, 0o755); err != nil {
			if errors.Is(err, os.ErrExist) {
				continue
			}
			return nil, fmt.Errorf("create %s: %w", dir, err)
		}
		hub := nsPrefix + tag + "hub"
		if _, err := os.Stat(filepath.Join(Dir, hub)); err == nil {
			os.Remove(dir)
			continue
		}
		alive, err := LockFile(filepath.Join(dir, "alive"), syscall.LOCK_EX)
		if err != nil {
			os.Remove(dir)
			return nil, err
		}
		return &Claim{Tag: tag, Subnet: int(v>>20)%250 + 1, Dir: dir, Hub: hub, Alive: alive}, nil
	}
	return nil, fmt.Errorf("no free tag after 20 tries; remove stale %s/%s* dirs and `ip netns list | grep ^%s` namespaces", dirBase, dirPrefix, nsPrefix)
}

// StartHolder starts the process that owns a node's mount and UTS
// namespaces inside network namespace ns: script runs under `unshare -m -u
// --propagation private sh -c`, must print "ready" once set up and then
// exec sleep. unshare runs without --fork, so ip, unshare, sh and sleep are
// one PID, the one returned. Its stderr goes to logPath. The Proc is
// returned as soon as it runs, also with the error of a holder that did not
// get ready within timeout (or ctx's deadline), so the caller can stop it.
func StartHolder(ctx context.Context, ns, script, logPath string, timeout time.Duration) (*Proc, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command("ip", "netns", "exec", ns,
		"unshare", "-m", "-u", "--propagation", "private", "sh", "-c", script)
	cmd.Stdout, cmd.Stderr = w, lf
	p, err := StartProc(cmd)
	w.Close()
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	r.SetReadDeadline(deadline)
	line, err := bufio.NewReader(r).ReadString('\n')
	if line != "ready\n" {
		return p, fmt.Errorf("namespace holder did not get ready (%v): %s", err, tail(logPath, 5))
	}
	return p, nil
}

// SweepNetns kills the processes left in a stale network namespace by PID
// (nobody waits for these orphans to shut down cleanly) and deletes it.
func SweepNetns(ns string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := Run(ctx, "ip", "netns", "pids", ns)
	if err != nil {
		return fmt.Errorf("sweep %s: %w", ns, err)
	}
	var refs []PIDRef
	for _, f := range strings.Fields(out) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		if _, _, start, err := procStat(pid); err == nil {
			refs = append(refs, PIDRef{pid, start})
		}
	}
	if err := Terminate(nil, refs, 0); err != nil {
		return fmt.Errorf("sweep %s: %w", ns, err)
	}
	if _, err := Run(ctx, "ip", "netns", "del", ns); err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	return nil
}

// Keygen creates an ed25519 key pair at path and returns the public key as
// "ssh-ed25519 BASE64" (comment dropped).
func Keygen(ctx context.Context, path, comment string) (string, error) {
	if _, err := Run(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path); err != nil {
		return "", fmt.Errorf("generate key %s: %w", path, err)
	}
	b, err := os.ReadFile(path + ".pub")
	if err != nil {
		return "", fmt.Errorf("read public key: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return "", fmt.Errorf("public key %s.pub is malformed: %q", path, b)
	}
	return f[0] + " " + f[1], nil
}

// tail returns the last lines of a log file, joined for an error message.
func tail(path string, max int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > max {
		lines = lines[len(lines)-max:]
	}
	return strings.Join(lines, " | ")
}
