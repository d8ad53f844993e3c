package proto

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// handshakeSeed encodes msgs as a stream of frames.
func handshakeSeed(msgs ...Message) []byte {
	var b bytes.Buffer
	c := NewConn(nil, &b)
	for _, m := range msgs {
		c.Send(m)
	}
	c.Flush()
	return b.Bytes()
}

// FuzzHandshake plays an arbitrary peer against both sides of the
// handshake. Neither side may panic, and neither may accept: every proof
// is bound to a fresh nonce of the side that checks it, so no byte string
// chosen in advance can pass (a pass would be an authentication bypass).
// Seeds: testdata/fuzz/FuzzHandshake and the f.Add below.
func FuzzHandshake(f *testing.F) {
	var nonce [32]byte
	nonce[0] = 1
	hello := &Hello{Version: Version, MinVersion: MinVersion, Node: "alpha", Groups: []string{"web"}, Nonce: nonce}
	f.Add(false, handshakeSeed(hello, &Auth{Proofs: []GroupProof{{Group: "web"}}}))
	f.Add(false, handshakeSeed(hello, &Auth{}))
	f.Add(false, handshakeSeed(&Hello{Version: 9, MinVersion: 9, Node: "alpha", Groups: []string{"web"}, Nonce: nonce}))
	f.Add(false, handshakeSeed(hello, &Auth{Proofs: []GroupProof{{Group: "web"}, {Group: "web"}, {Group: "db"}}}))
	f.Add(true, handshakeSeed(&HelloReply{Version: Version, Node: "beta", Nonce: nonce, Proofs: []GroupProof{{Group: "web"}}}, &AuthResult{OK: true}))
	f.Add(true, handshakeSeed(&HelloReply{Version: Version, Node: "beta", Nonce: nonce}, &AuthResult{OK: true}))
	f.Add(true, handshakeSeed(&Error{Message: "no"}))
	f.Fuzz(func(t *testing.T, client bool, peer []byte) {
		c := NewConn(bytes.NewReader(peer), io.Discard)
		if client {
			// We are the sender; peer is a receiver that may know nothing.
			if _, err := ClientHandshake(c, "alpha", map[string][]byte{"web": []byte(keyWeb)}, 0); err == nil {
				t.Fatalf("the sender accepted a receiver that never saw its nonce")
			}
			return
		}
		sender, groups, _, err := ServerHandshake(c, "beta", func(sender, group string) ([]byte, error) {
			if group == "web" {
				return []byte(keyWeb), nil
			}
			return nil, errors.New("unknown group")
		})
		if err == nil {
			t.Fatalf("the receiver accepted %s for %v without a proof over its nonce", sender, groups)
		}
	})
}
