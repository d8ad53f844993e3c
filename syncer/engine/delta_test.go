package engine

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"ocf-csync/syncer/delta"
	"ocf-csync/syncer/proto"
	"ocf-csync/syncer/state"
)

// The receiver sends XXH3 block sums only to a sender whose Hello says it
// reads them; an older sender (no flag) gets SHA-256 ones, as before.
func TestServeSignatureKindNegotiated(t *testing.T) {
	nodes := setup(t, "a", "b")
	b := nodes["b"]
	basis := make([]byte, 20<<20) // streamed: flushed as it is computed
	rand.NewChaCha8([32]byte{1}).Read(basis)
	if err := os.WriteFile(filepath.Join(b.root, "big"), basis, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		flags uint32
		magic uint32
	}{{0, 0x72730138}, {proto.FlagFastSig, 0x72730139}} {
		s := startServe(t, ServeOptions{View: b.view, Config: b.cfg, Store: b.st})
		if _, err := proto.ClientHandshake(s.c, "a", map[string][]byte{"g": []byte(testKey)}, tc.flags); err != nil {
			t.Fatal(err)
		}
		sendAll(t, s.c, proto.SigRequest{Seq: 1, Group: "g", Path: []byte("%data%/big")})
		var sig []byte
		frames := 0
		for done := false; !done; {
			m, err := s.c.Recv()
			if err != nil {
				t.Fatal(err)
			}
			switch m := m.(type) {
			case *proto.Sig:
				if !m.Have || m.Basis.Size != int64(len(basis)) {
					t.Fatalf("Sig %+v", m)
				}
			case *proto.Data:
				sig = append(sig, m.Bytes...)
				frames++
			case *proto.DataEnd:
				done = true
			default:
				t.Fatalf("unexpected %s", m.Type())
			}
		}
		if got := binary.BigEndian.Uint32(sig); got != tc.magic {
			t.Errorf("flags %#x: signature magic %#x, want %#x", tc.flags, got, tc.magic)
		}
		if frames < 3 {
			t.Errorf("a 20 MiB basis's signature came in %d frames: not streamed", frames)
		}
		s.bye(t)
	}
}

// A delta push of a big file with one byte changed sends a small delta and
// leaves the peer with the new content, for a sender matching a streamed
// XXH3 signature.
func TestPushBigFileDelta(t *testing.T) {
	nodes := setup(t, "a", "b")
	a, b := nodes["a"], nodes["b"]
	data := make([]byte, 40<<20)
	rand.NewChaCha8([32]byte{2}).Read(data)
	p := filepath.Join(a.root, "big")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := a.sync(t, nodes, Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	for i, change := range []func([]byte) []byte{
		func(d []byte) []byte { d[len(d)/2] ^= 1; return d },
		func(d []byte) []byte {
			return append(d[:4<<20:4<<20], append(bytes.Repeat([]byte{7}, 4096), d[4<<20:]...)...)
		},
		func(d []byte) []byte { return d[3<<20:] }, // head cut: blocks moved forward
	} {
		data = change(data)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		res := a.sync(t, nodes, Options{})
		if err := res.Err(); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(filepath.Join(b.root, "big")); !bytes.Equal(got, data) {
			t.Fatalf("change %d: the peer's copy differs", i)
		}
		if n := res.Peers[0].DataBytes; n > 256<<10 {
			t.Errorf("change %d: %d bytes of delta sent", i, n)
		}
	}
}

// A signature whose header is bad gets the whole file (the op says so
// before any content); a receiver that closes the session in the middle of
// a signature ends the push with an error instead of leaving the matcher
// waiting for the rest.
func TestSenderSignatureStreamFailures(t *testing.T) {
	nodes := setup(t, "a", "b")
	a := nodes["a"]
	data := make([]byte, 8<<20)
	rand.NewChaCha8([32]byte{3}).Read(data)
	if err := os.WriteFile(filepath.Join(a.root, "big"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	var sigBuf bytes.Buffer
	if err := delta.WriteSignatureAt(bytes.NewReader(data), int64(len(data)), &sigBuf, delta.SignatureOptions{Fast: true}); err != nil {
		t.Fatal(err)
	}
	badMagic := append([]byte{0x12, 0x34, 0x56, 0x78}, sigBuf.Bytes()[4:]...)
	for _, tc := range []struct {
		name  string
		sig   []byte
		close bool // end the session after the signature's first half
	}{{"bad magic", badMagic, false}, {"session ends mid-signature", sigBuf.Bytes()[:sigBuf.Len()/2], true}} {
		t.Run(tc.name, func(t *testing.T) {
			var content proto.ContentKind
			connect, ch := hostileReceiver(t, "b", func(c *proto.Conn) error {
				for {
					m, err := c.Recv()
					if err != nil {
						return err
					}
					switch m := m.(type) {
					case *proto.SigRequest:
						sendAll(t, c, proto.Sig{Seq: m.Seq, Have: true, Basis: proto.Record{Kind: state.KindReg, Size: int64(len(data))}},
							proto.Data{Seq: m.Seq, Bytes: tc.sig})
						if tc.close {
							return nil
						}
						sendAll(t, c, proto.DataEnd{Seq: m.Seq})
					case *proto.Op:
						if m.Kind != proto.OpFile {
							continue
						}
						content = m.Content
						go drain(c)
						return nil
					}
				}
			})
			p := pushTo(t, a, connect)
			ch.Close()
			if p.Err == nil {
				t.Error("the push succeeded against a receiver that acknowledged nothing")
			}
			if !tc.close && content != proto.ContentWhole {
				t.Errorf("content %v after a bad signature header, want the whole file", content)
			}
		})
	}
}
