package tests

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
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
	Kind proto.OpKind
	Path string
	// LinkTo is the hardlink target of an OpHardlink.
	LinkTo string
	// Target is the symlink target of an OpSymlink.
	Target string
	// BaseOf makes Base (and Forced=false) describe the current content of
	// this in-node file, so a receiver that let the path through would
	// apply the op instead of reporting a conflict. "" means Forced.
	BaseOf string
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
}

// hostileReport is what the helper prints per case, one JSON line each.
type hostileReport struct {
	Name    string
	Status  string
	Message string
}

// hostileSigReport is the helper's last line: the answer to a signature
// request for the group key, which must not be "have".
type hostileSigReport struct {
	SigHave bool
}

// The symlinks planted on node2 for the "through a symlinked directory" cases.
var hostileLinks = map[string]string{
	"link-abs": cluster.EtcDir,
	"link-rel": "../../var/lib/ocf-csync",
}

// hostileSender is the helper run inside node1: it connects to node2 like
// `ocf-csync sync` would (transport.Dial, the remote command, the group
// handshake with the right key), then sends hostileCases and reports each
// Ack on stdout.
func hostileSender() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	view, err := cfg.Node("node1")
	if err != nil {
		return err
	}
	host, ok := view.Group(groupName).Host("node2")
	if !ok {
		return errors.New("node2 is not in group " + groupName)
	}
	conn, err := transport.Dial(ctx, transport.Peer{Name: host.Name, Addr: host.Addr, Port: cfg.SSH.Port,
		User: cfg.SSH.User, IdentityFile: cfg.SSH.Identity, KnownHostsFile: cfg.SSH.KnownHosts,
		ConnectTimeout: cfg.SSH.ConnectTimeout}, nil)
	if err != nil {
		return err
	}
	defer conn.Close()
	// What `ocf-csync sync` runs (engine.RemoteCommand); the paths need no quoting.
	sess, err := conn.Exec(ctx, cfg.SSH.RemoteCommand+" --config "+cfgPath+" --node node2")
	if err != nil {
		return err
	}
	c := proto.NewConn(sess.Stdout, sess.Stdin)
	key, err := proto.ReadKeyFile(keyPath)
	if err != nil {
		return err
	}
	if _, err := proto.ClientHandshake(c, "node1", map[string][]byte{groupName: key}, 0); err != nil {
		return fmt.Errorf("handshake: %w (remote stderr: %s)", err, sess.Stderr())
	}

	seq := uint64(0)
	bySeq := map[uint64]int{}
	for i, hc := range hostileCases {
		seq++
		bySeq[seq] = i
		if err := sendHostile(c, seq, hc); err != nil {
			return fmt.Errorf("send %q: %w", hc.Name, err)
		}
	}
	// A signature of a file outside the include set would leak its content.
	seq++
	sigSeq := seq
	if err := c.Send(proto.SigRequest{Seq: sigSeq, Group: groupName, Path: []byte(keyPath)}); err != nil {
		return err
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
			if m.Seq == sigSeq && m.Have {
				sig.SigHave = true
			}
		case *proto.Data, *proto.DataEnd:
		case *proto.BatchDone:
			done = true
		default:
			return fmt.Errorf("unexpected %s from the receiver", m.Type())
		}
	}
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
	enc := json.NewEncoder(os.Stdout)
	for _, r := range reports {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return enc.Encode(sig)
}

func sendHostile(c *proto.Conn, seq uint64, hc hostileCase) error {
	content := []byte("written by a hostile sender: " + hc.Name + "\n")
	sum := sha256.Sum256(content)
	now := time.Now().UnixNano()
	op := proto.Op{Seq: seq, Group: groupName, Kind: hc.Kind, Path: []byte(hc.Path), Forced: true}
	switch hc.Kind {
	case proto.OpFile, proto.OpHardlink:
		op.New = proto.Record{Kind: state.KindReg, Mode: 0o644, Size: int64(len(content)), MtimeNs: now, Hash: sum}
	case proto.OpMkdir:
		op.New = proto.Record{Kind: state.KindDir, Mode: 0o755, MtimeNs: now}
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

func TestRefusesHostileSender(t *testing.T) {
	e := newEnv(t, 2)
	n1, n2 := e.node(1), e.node(2)
	for name, target := range hostileLinks {
		if err := os.Symlink(target, data(n2, name)); err != nil {
			t.Fatal(err)
		}
	}
	// What must stay as it is on node2: its data dir (but for ok.txt), its
	// group key, and the host's /etc/passwd.
	dataBefore := manifest(t, n2.Path(dataDir))
	etcBefore := manifest(t, n2.Path(cluster.EtcDir))
	passwdBefore := mustSHA256(t, "/etc/passwd")

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := n1.Command(t.Context(), self)
	cmd.Env = append(cmd.Env, helperEnv+"=hostile-sender")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("the hostile sender failed: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), stderr.String())
	}

	sc := bufio.NewScanner(&out)
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
		t.Fatalf("the helper reported %d cases, want %d:\n%s", len(reports), len(hostileCases), out.String())
	}
	for i, hc := range hostileCases {
		r := reports[i]
		if r.Status != hc.Want.String() {
			t.Errorf("%s (%s %q): node2 answered %s (%q), want %s", hc.Name, hc.Kind, hc.Path, r.Status, r.Message, hc.Want)
		} else {
			t.Logf("%s: %s: %s", hc.Name, r.Status, r.Message)
		}
	}
	if sig.SigHave {
		t.Errorf("node2 sent a signature of %s, outside its include set, to the hostile sender", keyPath)
	}

	if got := readFile(t, data(n2, "ok.txt")); !strings.HasPrefix(got, "written by a hostile sender: control") {
		t.Errorf("the control file ok.txt was not written on node2: %q", got)
	}
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
}
