package tests

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"ocf-csync/syncer/config"
	"ocf-csync/syncer/proto"
	"ocf-csync/syncer/state"
	"ocf-csync/syncer/transport"
	"ocf-csync/tests/cluster"
)

// hostileCase is one operation a hostile (but key-holding) sender tries on
// node2. want is the Ack status the receiver must answer.
type hostileCase struct {
	Name string
	// Group is the group the op names; "" is the group the sender proved.
	Group string
	Kind  proto.OpKind
	Path  string
	// LinkTo is the hardlink target of an OpHardlink.
	LinkTo string
	// Target is the symlink target of an OpSymlink.
	Target string
	// BaseOf makes Base (and Forced=false) describe the current content of
	// this in-node file, so a receiver that let the path through would
	// apply the op instead of reporting a conflict. "" means Forced.
	BaseOf string
	// Mode and UID, when set, are the new owner and mode of a directory op.
	Mode uint32
	UID  uint32
	// Bogus gives a Base that matches nothing: used for host files, so even
	// a receiver that let the path through writes nothing (a conflict).
	Bogus bool
	Want  proto.AckStatus
}

// Node-private paths (bind mounts) only: if the receiver let a write through,
// the damage stays inside the throwaway node. /etc/passwd is the host's own
// file, so ops on it carry a base that cannot match.
var hostileCases = []hostileCase{
	{Name: "control: a legitimate file", Kind: proto.OpFile, Path: dataDir + "/ok.txt", Want: proto.AckOK},
	{Name: "absolute path outside the include set (/etc/passwd)", Kind: proto.OpFile, Path: "/etc/passwd", Bogus: true, Want: proto.AckRefused},
	{Name: "delete outside the include set (/etc/passwd)", Kind: proto.OpDelete, Path: "/etc/passwd", Bogus: true, Want: proto.AckRefused},
	{Name: "file outside the include set", Kind: proto.OpFile, Path: "/etc/ocf-csync/evil-outside", Want: proto.AckRefused},
	{Name: "delete the group key", Kind: proto.OpDelete, Path: keyPath, BaseOf: keyPath, Want: proto.AckRefused},
	{Name: "mkdir outside the include set", Kind: proto.OpMkdir, Path: "/var/lib/ocf-csync/evil-dir", Want: proto.AckRefused},
	{Name: "symlink outside the include set", Kind: proto.OpSymlink, Path: "/etc/ocf-csync/evil-symlink", Target: "/", Want: proto.AckRefused},
	{Name: "dot-dot escape", Kind: proto.OpFile, Path: dataDir + "/../../etc/ocf-csync/evil-dotdot", Want: proto.AckRefused},
	{Name: "dot-dot escape, mkdir", Kind: proto.OpMkdir, Path: dataDir + "/../../var/lib/ocf-csync/evil-dotdot-dir", Want: proto.AckRefused},
	{Name: "dot-dot that stays inside", Kind: proto.OpFile, Path: dataDir + "/sub/../evil-inside-dotdot", Want: proto.AckRefused},
	{Name: "relative path", Kind: proto.OpFile, Path: "srv/ocf-csync/evil-relative", Want: proto.AckRefused},
	{Name: "unknown prefix", Kind: proto.OpFile, Path: "%nope%/evil-prefix", Want: proto.AckRefused},
	{Name: "through an absolute symlinked directory", Kind: proto.OpFile, Path: dataDir + "/link-abs/evil-through-abs", Want: proto.AckRefused},
	{Name: "through a relative symlinked directory", Kind: proto.OpFile, Path: dataDir + "/link-rel/evil-through-rel", Want: proto.AckRefused},
	{Name: "mkdir through a symlinked directory", Kind: proto.OpMkdir, Path: dataDir + "/link-abs/evil-dir-through", Want: proto.AckRefused},
	{Name: "delete through a symlinked directory", Kind: proto.OpDelete, Path: dataDir + "/link-abs/group.key", BaseOf: keyPath, Want: proto.AckRefused},
	{Name: "hardlink to the group key", Kind: proto.OpHardlink, Path: dataDir + "/stolen-key", LinkTo: keyPath, Want: proto.AckRefused},
	{Name: "hardlink to the group key in a new directory", Kind: proto.OpHardlink, Path: dataDir + "/new-dir/stolen-key", LinkTo: keyPath, Want: proto.AckRefused},
	{Name: "hardlink through a symlinked directory", Kind: proto.OpHardlink, Path: dataDir + "/stolen-key2", LinkTo: dataDir + "/link-abs/group.key", Want: proto.AckRefused},

	// #11 finding 1: the proof of group data opens data only.
	{Name: "setuid file in a group the sender is no host of", Group: "other", Kind: proto.OpFile, Path: otherDir + "/planted", Want: proto.AckRefused},
	{Name: "delete in a group the sender is no host of", Group: "other", Kind: proto.OpDelete, Path: otherDir + "/victim", BaseOf: otherDir + "/victim", Want: proto.AckRefused},
	{Name: "setuid file in a group where the sender is a slave", Group: "slave", Kind: proto.OpFile, Path: slaveDir + "/planted", Want: proto.AckRefused},
	{Name: "mkdir in a group where the sender is a slave", Group: "slave", Kind: proto.OpMkdir, Path: slaveDir + "/evil-dir", Want: proto.AckRefused},
	{Name: "setuid file in a group whose key the sender did not prove", Group: "nokey", Kind: proto.OpFile, Path: nokeyDir + "/planted", Want: proto.AckRefused},
	{Name: "delete in a group whose key the sender did not prove", Group: "nokey", Kind: proto.OpDelete, Path: nokeyDir + "/victim", BaseOf: nokeyDir + "/victim", Want: proto.AckRefused},

	// #11 finding 2: directories above an include are never changed or
	// removed; a missing one is created with safe defaults.
	{Name: "chmod/chown the directory above an include (include etc/ha.d/x)", Group: "parents", Kind: proto.OpDirMeta, Path: parentsDir + "/etc", Mode: 0o777, UID: 4242, Want: proto.AckRefused},
	{Name: "chmod the leading directory of an include", Group: "parents", Kind: proto.OpMkdir, Path: parentsDir + "/etc/ha.d", Mode: 0o777, Want: proto.AckRefused},
	{Name: "rmdir an empty directory above an include", Group: "parents", Kind: proto.OpDelete, Path: parentsDir + "/gone", Want: proto.AckRefused},
	{Name: "chmod a home directory through include home/*/public_html", Group: "parents", Kind: proto.OpDirMeta, Path: parentsDir + "/home/alice", Mode: 0o777, UID: 4242, Want: proto.AckRefused},
	{Name: "control: the included file below etc/ha.d", Group: "parents", Kind: proto.OpFile, Path: parentsDir + "/etc/ha.d/x", Want: proto.AckOK},
	{Name: "control: public_html of a home directory that does not exist yet", Group: "parents", Kind: proto.OpFile, Path: parentsDir + "/home/bob/public_html/index.html", Want: proto.AckOK},
}

// Include roots of the groups node1 must not reach from its proof of group
// data (node-private /run, so nothing leaks to the host).
const (
	hostileRun = cluster.RunDir + "/hostile"
	otherDir   = hostileRun + "/other"
	slaveDir   = hostileRun + "/slave"
	nokeyDir   = hostileRun + "/nokey"
	parentsDir = hostileRun + "/p"
	// impostorAddr is node3's address in group impostor: no node has it.
	impostorDir  = hostileRun + "/imp"
	impostorAddr = "192.0.2.3"
	otherKey     = cluster.EtcDir + "/other.key"
)

// hostileConfig is the config both nodes read in the hostile tests: group
// data as in every test, plus groups "other" (node1 is no host), "slave"
// (node1 is a slave) and "nokey" (node1 is a host, but the hostile sender
// proves only data and parents), "parents", whose includes lie deep below
// directories a member must not change, and "impostor", where node1 poses
// as node3.
func (e *env) hostileConfig() string {
	return e.configText() + fmt.Sprintf(`
group other {
	host node2 node3;
	key %[1]s;
	include %[2]s;
}
group slave {
	host node2 (node1);
	key %[3]s;
	include %[4]s;
}
group nokey {
	host node1 node2;
	key %[1]s;
	include %[5]s;
}
group impostor {
	host node1 node2 node3@%[7]s;
	key %[3]s;
	include %[8]s;
}
group parents {
	host node1 node2;
	key %[3]s;
	include %[6]s/etc/ha.d/x;
	include %[6]s/gone/x;
	include %[6]s/home/*/public_html;
}
`, otherKey, otherDir, keyPath, slaveDir, nokeyDir, parentsDir, impostorAddr, impostorDir)
}

// hostileReport is what the helper prints per case, one JSON line each.
type hostileReport struct {
	Name    string
	Status  string
	Message string
}

// hostileSigReport is the helper's last line: which signature requests
// (of files outside what the proof of group data opens) were answered with
// a signature.
type hostileSigReport struct {
	SigHave []string
}

// hostileSigs are the signature requests of the ops session: each would leak
// the content of a file the sender may not read.
var hostileSigs = []struct{ Group, Path string }{
	{groupName, keyPath},
	{"other", otherDir + "/big"},
	{"slave", slaveDir + "/big"},
	{"nokey", nokeyDir + "/big"},
}

// hostileRequests are compare/fetch requests of files of groups the sender
// did not prove; each ends its session with a refusal.
var hostileRequests = []struct {
	Group string
	Kind  proto.RequestKind
	Path  string
}{
	{"other", proto.RequestFetch, otherDir + "/victim"},
	{"slave", proto.RequestStat, slaveDir + "/victim"},
	{"nokey", proto.RequestList, nokeyDir},
}

// hostileRequestReport is what the helper prints per request.
type hostileRequestReport struct {
	Group, Kind string
	Refusal     string // the receiver's Error message, "" if none
	Leaked      bool   // an Entry or Data came back
}

// The symlinks planted on node2 for the "through a symlinked directory" cases.
var hostileLinks = map[string]string{
	"link-abs": cluster.EtcDir,
	"link-rel": "../../var/lib/ocf-csync",
}

// hostileSession connects to node2 like `ocf-csync sync` would
// (transport.Dial, the remote command plus extra arguments) and, unless
// noHandshake, runs the group handshake as node1 with the key of groups data
// and parents.
func hostileSession(ctx context.Context, extra string, noHandshake bool) (*transport.Conn, *transport.Session, *proto.Conn, error) {
	return hostileSessionAs(ctx, extra, noHandshake, "node1", groupName, "parents")
}

// hostileSessionAs is hostileSession with the claimed node name and the
// groups offered (all keyed with the key of group data).
func hostileSessionAs(ctx context.Context, extra string, noHandshake bool, claim string, groups ...string) (*transport.Conn, *transport.Session, *proto.Conn, error) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, nil, nil, err
	}
	view, err := cfg.Node("node1")
	if err != nil {
		return nil, nil, nil, err
	}
	host, ok := view.Group(groupName).Host("node2")
	if !ok {
		return nil, nil, nil, errors.New("node2 is not in group " + groupName)
	}
	conn, err := transport.Dial(ctx, transport.Peer{Name: host.Name, Addr: host.Addr, Port: cfg.SSH.Port,
		User: cfg.SSH.User, IdentityFile: cfg.SSH.Identity, KnownHostsFile: cfg.SSH.KnownHosts,
		ConnectTimeout: cfg.SSH.ConnectTimeout}, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	// What `ocf-csync sync` runs (engine.RemoteCommand); the paths need no quoting.
	sess, err := conn.Exec(ctx, cfg.SSH.RemoteCommand+" --config "+cfgPath+" --node node2"+extra)
	if err != nil {
		conn.Close()
		return nil, nil, nil, err
	}
	c := proto.NewConn(sess.Stdout, sess.Stdin)
	if noHandshake {
		return conn, sess, c, nil
	}
	key, err := proto.ReadKeyFile(keyPath)
	if err != nil {
		conn.Close()
		return nil, nil, nil, err
	}
	keys := map[string][]byte{}
	for _, g := range groups {
		keys[g] = key
	}
	if _, err := proto.ClientHandshake(c, claim, keys, 0); err != nil {
		sess.Stdin.Close()
		sess.Wait()
		conn.Close()
		return nil, nil, nil, &handshakeError{err: err, stderr: sess.Stderr()}
	}
	return conn, sess, c, nil
}

// handshakeError is a refused handshake with what the remote helper said.
type handshakeError struct {
	err    error
	stderr string
}

func (e *handshakeError) Error() string {
	return fmt.Sprintf("handshake: %v (remote stderr: %s)", e.err, e.stderr)
}

// impostorReport is what the impostor helper prints.
type impostorReport struct {
	Accepted bool   // the handshake as node3 succeeded
	Refusal  string // the handshake error the sender got
	Stderr   string // what the remote helper said
}

// hostileImpostor claims to be node3 (a host of group impostor, listed
// with another address) and, if that is accepted, plants a file.
func hostileImpostor(ctx context.Context) error {
	var rep impostorReport
	conn, sess, c, err := hostileSessionAs(ctx, "", false, "node3", "impostor")
	var he *handshakeError
	switch {
	case errors.As(err, &he):
		rep.Refusal, rep.Stderr = he.err.Error(), he.stderr
	case err != nil:
		return err
	default:
		rep.Accepted = true
		defer conn.Close()
		for _, m := range wholeFileMessages(1, "impostor", impostorDir+"/planted", "planted by node1 posing as node3\n") {
			if err := c.Send(m); err != nil {
				return err
			}
		}
		if err := c.Send(proto.EndBatch{Seq: 2}); err != nil {
			return err
		}
		c.Flush()
		for {
			m, err := c.Recv()
			if err != nil {
				return err
			}
			if _, ok := m.(*proto.BatchDone); ok {
				break
			}
		}
		if err := bye(c, sess); err != nil {
			return err
		}
	}
	return json.NewEncoder(os.Stdout).Encode(rep)
}

// wholeFileMessages is an OpFile with its content.
func wholeFileMessages(seq uint64, group, path, content string) []proto.Message {
	sum := sha256.Sum256([]byte(content))
	return []proto.Message{
		proto.Op{Seq: seq, Group: group, Kind: proto.OpFile, Path: []byte(path), Forced: true, Content: proto.ContentWhole,
			New: proto.Record{Kind: state.KindReg, Mode: 0o644, Size: int64(len(content)), MtimeNs: time.Now().UnixNano(), Hash: sum}},
		proto.Data{Seq: seq, Bytes: []byte(content)},
		proto.DataEnd{Seq: seq, SHA256: sum},
	}
}

// hostileSender is the helper run inside node1: $HOSTILE_MODE picks what
// it tries on node2 (see the cases below); it reports on stdout.
func hostileSender() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	switch m := os.Getenv("HOSTILE_MODE"); m {
	case "ops":
		return hostileOps(ctx)
	case "requests":
		return hostileRequestsRun(ctx)
	case "silent", "idle":
		return hostileSilent(ctx, m == "idle")
	case "impostor":
		return hostileImpostor(ctx)
	default:
		return fmt.Errorf("unknown HOSTILE_MODE %q", m)
	}
}

// hostileOps sends hostileCases and hostileSigs in one session and reports
// each answer.
func hostileOps(ctx context.Context) error {
	conn, sess, c, err := hostileSession(ctx, "", false)
	if err != nil {
		return err
	}
	defer conn.Close()

	seq := uint64(0)
	bySeq := map[uint64]int{}
	for i, hc := range hostileCases {
		seq++
		bySeq[seq] = i
		if err := sendHostile(c, seq, hc); err != nil {
			return fmt.Errorf("send %q: %w", hc.Name, err)
		}
	}
	sigBySeq := map[uint64]string{}
	for _, sr := range hostileSigs {
		seq++
		sigBySeq[seq] = sr.Path
		if err := c.Send(proto.SigRequest{Seq: seq, Group: sr.Group, Path: []byte(sr.Path)}); err != nil {
			return err
		}
	}
	seq++
	if err := c.Send(proto.EndBatch{Seq: seq}); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return err
	}

	reports := make([]hostileReport, len(hostileCases))
	for i, hc := range hostileCases {
		reports[i] = hostileReport{Name: hc.Name, Status: "no ack"}
	}
	var sig hostileSigReport
	for done := false; !done; {
		m, err := c.Recv()
		if err != nil {
			return fmt.Errorf("read acks: %w (remote stderr: %s)", err, sess.Stderr())
		}
		switch m := m.(type) {
		case *proto.Ack:
			if i, ok := bySeq[m.Seq]; ok {
				reports[i].Status, reports[i].Message = m.Status.String(), m.Message
			}
		case *proto.Sig:
			if p, ok := sigBySeq[m.Seq]; ok && m.Have {
				sig.SigHave = append(sig.SigHave, p)
			}
		case *proto.Data, *proto.DataEnd:
		case *proto.BatchDone:
			done = true
		default:
			return fmt.Errorf("unexpected %s from the receiver", m.Type())
		}
	}
	if err := bye(c, sess); err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	for _, r := range reports {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return enc.Encode(sig)
}

func bye(c *proto.Conn, sess *transport.Session) error {
	if err := c.Send(proto.Bye{}); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return err
	}
	sess.Stdin.Close()
	if err := sess.Wait(); err != nil {
		return fmt.Errorf("remote helper: %w", err)
	}
	return nil
}

// hostileRequestsRun sends each of hostileRequests in a session of its own.
func hostileRequestsRun(ctx context.Context) error {
	enc := json.NewEncoder(os.Stdout)
	for _, hr := range hostileRequests {
		conn, sess, c, err := hostileSession(ctx, "", false)
		if err != nil {
			return err
		}
		rep := hostileRequestReport{Group: hr.Group, Kind: fmt.Sprint(hr.Kind)}
		if err := c.Send(proto.Request{Seq: 1, Kind: hr.Kind, Group: hr.Group, Path: []byte(hr.Path), Recursive: true}); err != nil {
			return err
		}
		if err := c.Flush(); err != nil {
			return err
		}
	read:
		for {
			m, err := c.Recv()
			if err != nil {
				break
			}
			switch m := m.(type) {
			case *proto.Error:
				rep.Refusal = m.Message
				break read
			case *proto.Entry:
				if m.Exists {
					rep.Leaked = true
				}
				if hr.Kind == proto.RequestStat || (hr.Kind == proto.RequestList && len(m.Path) == 0) {
					break read
				}
			case *proto.Data:
				rep.Leaked = true
			case *proto.DataEnd:
				break read
			}
		}
		sess.Stdin.Close()
		sess.Wait()
		conn.Close()
		if err := enc.Encode(rep); err != nil {
			return err
		}
	}
	return nil
}

// silentReport is what the silent and idle helpers print.
type silentReport struct {
	AliveAfterKeepalives bool    // idle: the session outlived its idle timeout thanks to keepalives
	EndedAfter           float64 // seconds from the last frame sent until the remote ended
	Stderr               string  // the remote helper's stderr
}

// hostileSilent opens a session and sends nothing (silent: not even the
// handshake; idle: nothing after it, once keepalives have kept it open past
// the idle timeout). It prints "connected" as soon as the session is open.
func hostileSilent(ctx context.Context, idle bool) error {
	conn, sess, c, err := hostileSession(ctx, " "+os.Getenv("HOSTILE_ARGS"), !idle)
	if err != nil {
		return err
	}
	defer conn.Close()
	fmt.Println("connected")
	var rep silentReport
	ended := make(chan struct{})
	go func() { sess.Wait(); close(ended) }()
	if idle {
		// 3 s of keepalives against a 2 s idle timeout.
		for range 10 {
			time.Sleep(300 * time.Millisecond)
			if err := c.Send(proto.Keepalive{}); err != nil {
				break
			}
			if err := c.Flush(); err != nil {
				break
			}
		}
		select {
		case <-ended:
		default:
			rep.AliveAfterKeepalives = true
		}
	}
	start := time.Now()
	select {
	case <-ended:
		rep.EndedAfter = time.Since(start).Seconds()
	case <-time.After(30 * time.Second):
		rep.EndedAfter = -1
	}
	rep.Stderr = sess.Stderr()
	return json.NewEncoder(os.Stdout).Encode(rep)
}

func sendHostile(c *proto.Conn, seq uint64, hc hostileCase) error {
	content := []byte("written by a hostile sender: " + hc.Name + "\n")
	sum := sha256.Sum256(content)
	now := time.Now().UnixNano()
	group := hc.Group
	if group == "" {
		group = groupName
	}
	op := proto.Op{Seq: seq, Group: group, Kind: hc.Kind, Path: []byte(hc.Path), Forced: true}
	switch hc.Kind {
	case proto.OpFile, proto.OpHardlink:
		op.New = proto.Record{Kind: state.KindReg, Mode: 0o4755, Size: int64(len(content)), MtimeNs: now, Hash: sum}
	case proto.OpMkdir, proto.OpDirMeta:
		op.New = proto.Record{Kind: state.KindDir, Mode: 0o755, MtimeNs: now}
		if hc.Mode != 0 {
			op.New.Mode, op.New.UID = hc.Mode, hc.UID
		}
	case proto.OpSymlink:
		op.New = proto.Record{Kind: state.KindSymlink, Mode: 0o777, MtimeNs: now, Target: hc.Target}
	}
	switch {
	case hc.Bogus:
		op.Forced, op.HasBase = false, true
		op.Base = proto.Record{Kind: state.KindReg, Mode: 0o644, Size: 1, Hash: state.Hash{0xba, 0xd0}}
	case hc.BaseOf != "":
		b, err := os.ReadFile(hc.BaseOf)
		if err != nil {
			return err
		}
		op.Forced, op.HasBase = false, true
		op.Base = proto.Record{Kind: state.KindReg, Mode: 0o600, Size: int64(len(b)), Hash: sha256.Sum256(b)}
	}
	if hc.Kind == proto.OpHardlink {
		op.LinkTo = []byte(hc.LinkTo)
	}
	if hc.Kind == proto.OpFile {
		op.Content = proto.ContentWhole
	}
	if err := c.Send(op); err != nil {
		return err
	}
	if hc.Kind != proto.OpFile {
		return nil
	}
	if err := c.Send(proto.Data{Seq: seq, Bytes: content}); err != nil {
		return err
	}
	return c.Send(proto.DataEnd{Seq: seq, SHA256: sum})
}

// runHostile runs the hostile helper on node n in mode and returns its
// stdout; it fails the test if the helper fails.
func runHostile(t *testing.T, n *cluster.Node, mode, args string, started func()) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := n.Command(t.Context(), self)
	cmd.Env = append(cmd.Env, helperEnv+"=hostile-sender", "HOSTILE_MODE="+mode, "HOSTILE_ARGS="+args)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(out)
	var all strings.Builder
	if started != nil {
		line, _ := br.ReadString('\n')
		if line != "connected\n" {
			rest, _ := io.ReadAll(br)
			cmd.Wait()
			t.Fatalf("the hostile helper (%s) did not connect: %q%s\nstderr:\n%s", mode, line, rest, stderr.String())
		}
		started()
	}
	rest, _ := io.ReadAll(br)
	all.Write(rest)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the hostile helper (%s) failed: %v\nstdout:\n%s\nstderr:\n%s", mode, err, all.String(), stderr.String())
	}
	return all.String()
}

// TestRefusesHostileSender runs a real `serve` behind real sshd on node2
// against a sender on node1 that holds the key of group data and tries
// everything else (DESIGN §8, issue #11).
func TestRefusesHostileSender(t *testing.T) {
	e := newEnv(t, 2)
	n1, n2 := e.node(1), e.node(2)
	for _, n := range []*cluster.Node{n1, n2} {
		e.writeFile(n, cfgPath, e.hostileConfig(), 0o644)
		e.writeFile(n, otherKey, groupKey(2)+"\n", 0o600)
	}
	for name, target := range hostileLinks {
		if err := os.Symlink(target, data(n2, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{otherDir, slaveDir, nokeyDir} {
		// The sender knows the victim's content (BaseOf reads its copy).
		e.writeFile(n1, dir+"/victim", "a file in "+dir+"\n", 0o600)
		e.writeFile(n2, dir+"/victim", "a file in "+dir+"\n", 0o600)
		e.writeFile(n2, dir+"/big", strings.Repeat("secret\n", 40<<10), 0o600)
	}
	// Directories above the includes of group parents: alice's home is
	// hers and private.
	for _, d := range []string{"/etc/ha.d", "/gone", "/home/alice"} {
		if err := os.MkdirAll(n2.Path(parentsDir+d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(n2.Path(parentsDir+"/home/alice"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(n2.Path(parentsDir+"/home/alice"), 0o700); err != nil {
		t.Fatal(err)
	}
	parents := []string{"", "/etc", "/etc/ha.d", "/gone", "/home", "/home/alice"}
	parentsBefore := map[string]entry{}
	for _, d := range parents {
		e, err := describe(n2.Path(parentsDir+d), d)
		if err != nil {
			t.Fatal(err)
		}
		parentsBefore[d] = e
	}

	// What must stay as it is on node2: its data dir (but for ok.txt), its
	// group keys, the other groups' files, and the host's /etc/passwd.
	dataBefore := manifest(t, n2.Path(dataDir))
	etcBefore := manifest(t, n2.Path(cluster.EtcDir))
	var runBefore [][]entry
	for _, dir := range []string{otherDir, slaveDir, nokeyDir} {
		runBefore = append(runBefore, manifest(t, n2.Path(dir)))
	}
	passwdBefore := mustSHA256(t, "/etc/passwd")

	t.Run("ops", func(t *testing.T) {
		out := runHostile(t, n1, "ops", "", nil)
		sc := bufio.NewScanner(strings.NewReader(out))
		var reports []hostileReport
		var sig hostileSigReport
		for sc.Scan() {
			line := sc.Bytes()
			if len(reports) == len(hostileCases) {
				if err := json.Unmarshal(line, &sig); err != nil {
					t.Fatalf("bad helper line %q: %v", line, err)
				}
				continue
			}
			var r hostileReport
			if err := json.Unmarshal(line, &r); err != nil {
				t.Fatalf("bad helper line %q: %v", line, err)
			}
			reports = append(reports, r)
		}
		if len(reports) != len(hostileCases) {
			t.Fatalf("the helper reported %d cases, want %d:\n%s", len(reports), len(hostileCases), out)
		}
		for i, hc := range hostileCases {
			r := reports[i]
			if r.Status != hc.Want.String() {
				t.Errorf("%s (%s %q): node2 answered %s (%q), want %s", hc.Name, hc.Kind, hc.Path, r.Status, r.Message, hc.Want)
			} else {
				t.Logf("%s: %s: %s", hc.Name, r.Status, r.Message)
			}
		}
		for _, p := range sig.SigHave {
			t.Errorf("node2 sent a signature of %s to a sender that may not read it", p)
		}
		if got := readFile(t, data(n2, "ok.txt")); !strings.HasPrefix(got, "written by a hostile sender: control") {
			t.Errorf("the control file ok.txt was not written on node2: %q", got)
		}
	})

	t.Run("requests", func(t *testing.T) {
		out := runHostile(t, n1, "requests", "", nil)
		sc := bufio.NewScanner(strings.NewReader(out))
		n := 0
		for sc.Scan() {
			var r hostileRequestReport
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("bad helper line %q: %v", sc.Bytes(), err)
			}
			n++
			switch {
			case r.Leaked:
				t.Errorf("request %s of group %s: node2 answered with its files", r.Kind, r.Group)
			case !strings.Contains(r.Refusal, r.Group):
				t.Errorf("request %s of group %s: refusal %q does not name the group", r.Kind, r.Group, r.Refusal)
			default:
				t.Logf("request %s of group %s refused: %s", r.Kind, r.Group, r.Refusal)
			}
		}
		if n != len(hostileRequests) {
			t.Fatalf("the helper reported %d requests, want %d:\n%s", n, len(hostileRequests), out)
		}
	})

	t.Run("nothing else changed", func(t *testing.T) {
		var dataAfter []entry
		for _, e := range manifest(t, n2.Path(dataDir)) {
			if e.Path != "ok.txt" {
				dataAfter = append(dataAfter, e)
			}
		}
		if d := diffManifests("node2's data before", dataBefore, "after", dataAfter); d != "" {
			t.Errorf("the hostile sender changed node2's data dir beyond ok.txt: %s", d)
		}
		if d := diffManifests("node2's /etc/ocf-csync before", etcBefore, "after", manifest(t, n2.Path(cluster.EtcDir))); d != "" {
			t.Errorf("the hostile sender changed node2's /etc/ocf-csync: %s", d)
		}
		for i, dir := range []string{otherDir, slaveDir, nokeyDir} {
			if d := diffManifests("node2's "+dir+" before", runBefore[i], "after", manifest(t, n2.Path(dir))); d != "" {
				t.Errorf("the hostile sender changed the files of a group it did not prove: %s", d)
			}
		}
		// Above the includes of group parents nothing changed owner or
		// mode, nothing was removed, and the mtime moved only where an
		// entry was added (etc/ha.d got x, home got bob).
		for _, d := range parents {
			now, err := describe(n2.Path(parentsDir+d), d)
			if err != nil {
				t.Errorf("directory %s above an include: %v", parentsDir+d, err)
				continue
			}
			was := parentsBefore[d]
			if d != "" && d != "/etc/ha.d" && d != "/home" && now.Mtime != was.Mtime {
				t.Errorf("the mtime of %s above an include changed", parentsDir+d)
			}
			now.Mtime, was.Mtime = 0, 0
			if now != was {
				t.Errorf("directory %s above an include changed: %+v, was %+v", parentsDir+d, now, was)
			}
		}
		// A missing parent is created 0755, owned like the nearest
		// existing parent (home: root), never like the sender asked.
		for _, d := range []string{"/home/bob", "/home/bob/public_html"} {
			e, err := describe(n2.Path(parentsDir+d), d)
			if err != nil || e.Type != "dir" || e.Mode != 0o755 || e.UID != 0 || e.GID != 0 {
				t.Errorf("created parent %s: %+v, %v; want a directory 0755 root:root", parentsDir+d, e, err)
			}
		}
		// The state db changes (it records ok.txt); only new top-level entries
		// are the hostile ones.
		for _, e := range manifest(t, n2.Path("/var/lib/ocf-csync")) {
			if strings.HasPrefix(e.Path, "evil") {
				t.Errorf("the hostile sender created /var/lib/ocf-csync/%s on node2", e.Path)
			}
		}
		if s := mustSHA256(t, "/etc/passwd"); s != passwdBefore {
			t.Errorf("/etc/passwd changed during the hostile session (sha256 %s, was %s)", s, passwdBefore)
		}
	})

	// #11 finding 8: the claimed node name must match the connecting
	// address (SSH_CONNECTION); every case above was node1 from its own.
	t.Run("impostor", func(t *testing.T) {
		out := runHostile(t, n1, "impostor", "", nil)
		var r impostorReport
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("bad helper output %q: %v", out, err)
		}
		if r.Accepted {
			t.Fatalf("node2 accepted node1 posing as node3")
		}
		for _, want := range []string{"claims to be node3", "connects from " + n1.Addr, impostorAddr} {
			if !strings.Contains(r.Refusal, want) || !strings.Contains(r.Stderr, want) {
				t.Errorf("the refusal does not say %q:\nsender got: %s\nnode2 said: %s", want, r.Refusal, r.Stderr)
			}
		}
		if _, err := os.Lstat(n2.Path(impostorDir + "/planted")); err == nil {
			t.Errorf("the impostor planted a file")
		}
	})

	// #11 finding 7: a connection that never authenticates holds no lock
	// and ends at the handshake deadline.
	t.Run("silent connection", func(t *testing.T) {
		var check result
		out := runHostile(t, n1, "silent", "--handshake-timeout 3s", func() {
			time.Sleep(time.Second) // serve is up and, before the fix, held the lock
			check = e.csync(n2, "--lock-timeout", "1", "check")
		})
		if check.code != 0 {
			t.Errorf("check on node2 while an unauthenticated connection was open failed:\n%s", check)
		}
		var r silentReport
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("bad helper output %q: %v", out, err)
		}
		if r.EndedAfter < 0 || r.EndedAfter > 10 || !strings.Contains(r.Stderr, "handshake deadline") {
			t.Errorf("silent connection: ended after %.1fs (-1: not within 30s), remote stderr %q; want the handshake deadline after 3s", r.EndedAfter, r.Stderr)
		}
	})

	// An authenticated session is kept open by keepalives and ends at the
	// idle deadline once the sender sends nothing.
	t.Run("idle session", func(t *testing.T) {
		out := runHostile(t, n1, "idle", "--idle-timeout 2s", func() {})
		var r silentReport
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("bad helper output %q: %v", out, err)
		}
		if !r.AliveAfterKeepalives {
			t.Errorf("the session ended although keepalives were sent (remote stderr %q)", r.Stderr)
		}
		if r.EndedAfter < 1 || r.EndedAfter > 10 || !strings.Contains(r.Stderr, "idle deadline") {
			t.Errorf("idle session: ended %.1fs after the last frame (-1: not within 30s), remote stderr %q; want the idle deadline after 2s", r.EndedAfter, r.Stderr)
		}
	})
}
