package proto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"ocf-csync/syncer/state"
)

func hash(b byte) state.Hash {
	var h state.Hash
	for i := range h {
		h[i] = b + byte(i)
	}
	return h
}

var (
	regRec  = Record{Kind: state.KindReg, Mode: 0644, UID: 1000, GID: 100, Size: 12345, MtimeNs: 1_700_000_000_123_456_789, Hash: hash(7)}
	linkRec = Record{Kind: state.KindSymlink, Mode: 0777, MtimeNs: -5, Target: "../x/\xff\x00y"}
	devRec  = Record{Kind: state.KindChr, Mode: 0600, Rdev: 1<<40 | 3, UID: 1<<32 - 1}
)

// allMessages holds one populated value of every message type.
func allMessages() []Message {
	return []Message{
		&Hello{Version: 1, MinVersion: 1, Node: "alpha", Groups: []string{"g1", "web"}, Nonce: hash(1), Flags: FlagDryRun},
		&HelloReply{Version: 1, Node: "beta", Nonce: hash(2), Proofs: []GroupProof{{Group: "g1", MAC: hash(3)}, {Group: "web", MAC: hash(4)}}},
		&Auth{Proofs: []GroupProof{{Group: "g1", MAC: hash(5)}}},
		&AuthResult{OK: false, Refused: []GroupRefusal{{Group: "g1", Reason: "wrong group key"}, {Group: "x", Reason: "group x unknown here"}}},
		&AuthResult{OK: true},
		&Op{Seq: 1 << 40, Group: "web", Kind: OpFile, Path: []byte("srv/www/\xfeindex.html"), HasBase: true, Base: regRec, New: regRec, Content: ContentDelta, Forced: true},
		&Op{Seq: 2, Group: "web", Kind: OpDelete, Path: []byte("a/b")},
		&Op{Seq: 3, Group: "web", Kind: OpSymlink, Path: []byte("l"), New: linkRec, Content: ContentNone},
		&Op{Seq: 4, Group: "web", Kind: OpHardlink, Path: []byte("h2"), New: regRec, LinkTo: []byte("h1")},
		&Op{Seq: 5, Group: "dev", Kind: OpSpecial, Path: []byte("dev/tty9"), New: devRec, HasBase: true, Base: Record{Kind: state.KindFifo}},
		&SigRequest{Seq: 9, Group: "web", Path: []byte("big.iso"), BasisHint: regRec},
		&Sig{Seq: 9, Have: true, Basis: regRec},
		&Sig{Seq: 10},
		&Data{Seq: 9, Bytes: bytes.Repeat([]byte{0xab}, MaxData)},
		&Data{Seq: 11, Bytes: []byte("x")},
		&DataEnd{Seq: 9, SHA256: hash(9)},
		&Ack{Seq: 1, Status: AckOK, HasCurrent: true, Current: regRec},
		&Ack{Seq: 2, Status: AckConflict, Message: "a/b changed here too"},
		&Ack{Seq: 3, Status: AckRetry},
		&EndBatch{Seq: 100},
		&BatchDone{Seq: 100, ActionsRun: 3, ActionErrors: []string{"systemctl reload nginx: exit status 1", "ünïcode"}},
		&BatchDone{Seq: 101},
		&Request{Seq: 7, Kind: RequestList, Group: "web", Path: []byte("srv"), Recursive: true},
		&Entry{Seq: 7, Path: []byte("srv/a"), Exists: true, Record: linkRec},
		&Entry{Seq: 7},
		&Error{Message: "receiver beta: state database is locked"},
		&Bye{},
		&Keepalive{},
		&Handoff{Seq: 9, Epoch: 4, From: "node1", Clean: true, UpToNs: 1700000000123456789},
	}
}

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	c := NewConn(&buf, &buf)
	msgs := allMessages()
	seen := map[MsgType]bool{}
	for _, m := range msgs {
		if err := c.Send(m); err != nil {
			t.Fatalf("send %s: %v", m.Type(), err)
		}
		seen[m.Type()] = true
	}
	for ty := MsgHello; ty < msgEnd; ty++ {
		if !seen[ty] {
			t.Errorf("message type %s missing from the round-trip table", ty)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, want := range msgs {
		got, err := c.Recv()
		if err != nil {
			t.Fatalf("recv %s: %v", want.Type(), err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s round trip:\n got %+v\nwant %+v", want.Type(), got, want)
		}
	}
	if _, err := c.Recv(); err != io.EOF {
		t.Fatalf("after the last frame: got %v, want io.EOF", err)
	}
}

// Values and pointers both send; Recv hands back pointers.
func TestSendValue(t *testing.T) {
	var buf bytes.Buffer
	c := NewConn(&buf, &buf)
	if err := c.Send(Ack{Seq: 4, Status: AckSame}); err != nil {
		t.Fatal(err)
	}
	c.Flush()
	m, err := c.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := m.(*Ack); !ok || a.Seq != 4 || a.Status != AckSame {
		t.Fatalf("got %#v", m)
	}
}

func TestRecordConversion(t *testing.T) {
	fr := state.FileRecord{Kind: state.KindReg, Mode: 0640, UID: 1, GID: 2, Size: 3, MtimeNs: 4,
		CtimeNs: 5, Dev: 6, Ino: 7, Nlink: 8, Rdev: 9, Target: "t", Hash: hash(1)}
	back := RecordFrom(fr).FileRecord()
	want := fr
	want.CtimeNs, want.Dev, want.Ino, want.Nlink = 0, 0, 0, 0
	if back != want {
		t.Fatalf("got %+v, want %+v", back, want)
	}
	dir := state.FileRecord{Kind: state.KindDir, Hash: hash(2)}
	if RecordFrom(dir).Hash != (state.Hash{}) {
		t.Fatal("a directory record kept a hash; only regular files carry one")
	}
}

func TestSendLimits(t *testing.T) {
	long := bytes.Repeat([]byte("a"), MaxPath+1)
	tests := []struct {
		name string
		m    Message
		want string
	}{
		{"path", &Op{Kind: OpFile, Path: long}, "path of 4097 bytes"},
		{"link target", &Op{Kind: OpHardlink, Path: []byte("x"), LinkTo: long}, "hardlink target"},
		{"symlink", &Op{Kind: OpSymlink, New: Record{Kind: state.KindSymlink, Target: string(long)}}, "symlink target"},
		{"data", &Data{Bytes: make([]byte, MaxData+1)}, "data chunk"},
		{"groups", &Hello{Groups: make([]string, MaxGroups+1)}, "129 groups"},
		{"group name", &Op{Group: strings.Repeat("g", MaxName+1)}, "group name"},
		{"action errors", &BatchDone{ActionErrors: make([]string, MaxErrors+1)}, "action errors"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			c := NewConn(&buf, &buf)
			err := c.Send(tc.m)
			if !errors.Is(err, ErrTooLong) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrTooLong mentioning %q", err, tc.want)
			}
			c.Flush()
			if buf.Len() != 0 {
				t.Fatalf("a refused message wrote %d bytes", buf.Len())
			}
		})
	}
}

func TestTextTruncated(t *testing.T) {
	var buf bytes.Buffer
	c := NewConn(&buf, &buf)
	msg := strings.Repeat("é", MaxText) // 2 bytes a rune: the cut falls inside one
	if err := c.Send(&Error{Message: msg}); err != nil {
		t.Fatal(err)
	}
	c.Flush()
	m, err := c.Recv()
	if err != nil {
		t.Fatal(err)
	}
	got := m.(*Error).Message
	if len(got) != MaxText || !strings.HasPrefix(msg, got) {
		t.Fatalf("truncated to %d bytes, want %d and a prefix", len(got), MaxText)
	}
}

// frame builds a raw frame.
func frame(ty MsgType, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(payload)+1))
	b = append(b, byte(ty))
	return append(b, payload...)
}

func TestRecvErrors(t *testing.T) {
	goodOp := func() []byte {
		var buf bytes.Buffer
		c := NewConn(nil, &buf)
		c.Send(&Op{Seq: 1, Group: "g", Kind: OpFile, Path: []byte("p"), New: regRec})
		c.Flush()
		return buf.Bytes()
	}()
	tests := []struct {
		name  string
		input []byte
		is    error
		want  string
	}{
		{"oversize", binary.BigEndian.AppendUint32(nil, MaxFrame+1), ErrFrameTooLarge, "limit is"},
		{"huge", []byte{0xff, 0xff, 0xff, 0xff, 1}, ErrFrameTooLarge, "4294967295 bytes"},
		{"banner", []byte("Welcome to host beta\n"), ErrFrameTooLarge, `"Welcome to host beta\n"`},
		{"short header", []byte{0, 0}, ErrTruncated, "2 of 4 header bytes"},
		{"truncated frame", goodOp[:len(goodOp)-3], ErrTruncated, "read Op frame"},
		{"truncated big frame", append(binary.BigEndian.AppendUint32(nil, 200000), byte(MsgData), 1), ErrTruncated, "2 of 200000 bytes"},
		{"empty frame", []byte{0, 0, 0, 0}, ErrMalformed, "empty frame"},
		{"garbage type", frame(99, nil), ErrUnknownType, "99"},
		{"type zero", frame(0, []byte{1}), ErrUnknownType, "type 0"},
		{"trailing bytes", frame(MsgBye, []byte{0}), ErrMalformed, "1 trailing bytes"},
		{"group count", frame(MsgAuth, binary.AppendUvarint(nil, MaxGroups+1)), ErrTooLong, "129 group proofs"},
		{"count past frame", frame(MsgAuth, binary.AppendUvarint(nil, 100)), ErrMalformed, "do not fit"},
		{"error count", frame(MsgBatchDone, append([]byte{1, 1}, binary.AppendUvarint(nil, 1<<62)...)), ErrTooLong, "action errors"},
		{"path length", frame(MsgEntry, append([]byte{1}, binary.AppendUvarint(nil, MaxPath+1)...)), ErrTooLong, "path of 4097 bytes"},
		{"path past end", frame(MsgEntry, []byte{1, 10, 'a'}), ErrMalformed, "runs past the frame end"},
		{"data too big", frame(MsgData, append([]byte{1}, binary.AppendUvarint(nil, MaxData+1)...)), ErrTooLong, "data chunk"},
		{"bad bool", frame(MsgSig, []byte{1, 2}), ErrMalformed, "not a boolean"},
		{"bad varint", frame(MsgEndBatch, bytes.Repeat([]byte{0xff}, 11)), ErrMalformed, "bad varint in seq"},
		{"bad op kind", frame(MsgOp, []byte{1, 1, 'g', 42}), ErrMalformed, "unknown op kind 42"},
		{"bad status", frame(MsgAck, []byte{1, 9}), ErrMalformed, "unknown ack status 9"},
		{"bad file kind", frame(MsgSig, []byte{1, 1, 200}), ErrMalformed, "unknown file kind 200"},
		{"bad mode", frame(MsgSig, append([]byte{1, 1, 1}, binary.AppendUvarint(nil, 010000)...)), ErrMalformed, "more than permission bits"},
		{"uid range", frame(MsgSig, append([]byte{1, 1, 1, 0}, binary.AppendUvarint(nil, 1<<32)...)), ErrMalformed, "uid 4294967296 out of range"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewConn(bytes.NewReader(tc.input), io.Discard)
			m, err := c.Recv()
			if err == nil {
				t.Fatalf("accepted %#v", m)
			}
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %q, want %v mentioning %q", err, tc.is, tc.want)
			}
			// The stream is out of step: the error sticks.
			if _, err2 := c.Recv(); err2 != err {
				t.Fatalf("second Recv: got %v, want the same error", err2)
			}
		})
	}
}

// A peer announcing a huge frame gets an error before anything of that
// size is allocated.
func TestOversizeAllocatesNothing(t *testing.T) {
	input := append(binary.BigEndian.AppendUint32(nil, 1<<31), make([]byte, 64)...)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc
	c := NewConn(bytes.NewReader(input), io.Discard)
	if _, err := c.Recv(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v", err)
	}
	runtime.ReadMemStats(&ms)
	// The two bufio buffers and the error; a 2 GiB frame buffer would show.
	if used := ms.TotalAlloc - before; used > 2*bufSize+64<<10 {
		t.Fatalf("refusing an oversize frame allocated %d bytes", used)
	}
}

// Frames above the bufio size take the other read path.
func TestLargeFrames(t *testing.T) {
	pr, pw := io.Pipe()
	c := NewConn(pr, pw)
	chunk := bytes.Repeat([]byte("0123456789abcdef"), MaxData/16)
	go func() {
		for i := range 5 {
			c.Send(&Data{Seq: uint64(i), Bytes: chunk})
			c.Send(&Ack{Seq: uint64(i), Status: AckOK}) // small one between
		}
		c.Flush()
		pw.Close()
	}()
	for i := range 5 {
		m, err := c.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := m.(*Data); !ok || d.Seq != uint64(i) || !bytes.Equal(d.Bytes, chunk) {
			t.Fatalf("frame %d: wrong Data", i)
		}
		if m, err = c.Recv(); err != nil || m.(*Ack).Seq != uint64(i) {
			t.Fatalf("frame %d: %v %v", i, m, err)
		}
	}
}

func TestRecvReusesGroupString(t *testing.T) {
	var buf bytes.Buffer
	c := NewConn(&buf, &buf)
	c.Send(&Op{Seq: 1, Group: "web", Kind: OpMeta, Path: []byte("a")})
	c.Send(&Op{Seq: 2, Group: "web", Kind: OpMeta, Path: []byte("b")})
	c.Send(&Op{Seq: 3, Group: "db", Kind: OpMeta, Path: []byte("c")})
	c.Flush()
	var got []string
	for range 3 {
		m, err := c.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.(*Op).Group)
	}
	if !reflect.DeepEqual(got, []string{"web", "web", "db"}) {
		t.Fatalf("groups %q", got)
	}
}
