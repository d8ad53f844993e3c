package proto

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	keyWeb = "webkeywebkeywebkeywebkeywebkeywebkeywebkeywebkeywebkeywebkey1234"
	keyDB  = "dbkey.dbkey.dbkey.dbkey.dbkey.dbkey.dbkey.dbkey.dbkey.dbkey_1234"
)

// pipePair returns two connected Conns, like the two ends of an SSH exec
// channel.
func pipePair(t *testing.T) (client, server *Conn) {
	c2sR, c2sW := io.Pipe()
	s2cR, s2cW := io.Pipe()
	t.Cleanup(func() {
		c2sR.Close()
		c2sW.Close()
		s2cR.Close()
		s2cW.Close()
	})
	return NewConn(s2cR, c2sW), NewConn(c2sR, s2cW)
}

// sendAsync sends m without blocking the test: io.Pipe writes wait for a
// reader, and a server that refused the handshake reads nothing more. The
// pipes' Cleanup unblocks it.
func sendAsync(c *Conn, m Message) {
	go func() {
		c.Send(m)
		c.Flush()
	}()
}

type serverResult struct {
	sender string
	groups []string
	flags  uint32
	err    error
	next   Message // first message after the handshake, if it succeeded
}

// runServer runs ServerHandshake for node "beta" in a goroutine. keys is the
// receiver's view; hosts lists who may push.
func runServer(s *Conn, keys map[string]string, hosts map[string][]string) chan serverResult {
	done := make(chan serverResult, 1)
	go func() {
		var r serverResult
		r.sender, r.groups, r.flags, r.err = ServerHandshake(s, "beta", func(sender, group string) ([]byte, error) {
			k, ok := keys[group]
			if !ok {
				return nil, fmt.Errorf("group %s unknown here", group)
			}
			for _, h := range hosts[group] {
				if h == sender {
					return []byte(k), nil
				}
			}
			return nil, fmt.Errorf("sender %s is not a host of group %s", sender, group)
		})
		if r.err == nil {
			r.next, _ = s.Recv()
		}
		done <- r
	}()
	return done
}

func TestHandshakeOK(t *testing.T) {
	c, s := pipePair(t)
	done := runServer(s, map[string]string{"web": keyWeb, "db": keyDB},
		map[string][]string{"web": {"alpha", "beta"}, "db": {"alpha", "beta"}})
	peer, err := ClientHandshake(c, "alpha", map[string][]byte{"web": []byte(keyWeb), "db": []byte(keyDB)}, FlagDryRun)
	if err != nil {
		t.Fatal(err)
	}
	if peer != "beta" {
		t.Fatalf("peer %q, want beta", peer)
	}
	c.Send(&Bye{})
	c.Flush()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.sender != "alpha" || strings.Join(r.groups, ",") != "db,web" || r.flags != FlagDryRun {
		t.Fatalf("server got sender %q groups %q flags %d", r.sender, r.groups, r.flags)
	}
	if _, ok := r.next.(*Bye); !ok {
		t.Fatalf("after the handshake the server read %#v, want Bye", r.next)
	}
}

// The receiver holds a different key: the sender detects it from the
// receiver's proof, names the group, and sends no proof of its own.
func TestHandshakeWrongKey(t *testing.T) {
	for _, side := range []string{"receiver", "sender"} {
		t.Run(side, func(t *testing.T) {
			srvKeys := map[string]string{"web": keyWeb, "db": keyDB}
			cliKeys := map[string][]byte{"web": []byte(keyWeb), "db": []byte(keyDB)}
			if side == "receiver" {
				srvKeys["db"] = keyWeb
			} else {
				cliKeys["db"] = []byte(keyWeb)
			}
			c, s := pipePair(t)
			done := runServer(s, srvKeys, map[string][]string{"web": {"alpha"}, "db": {"alpha"}})
			_, err := ClientHandshake(c, "alpha", cliKeys, 0)
			want := "peer beta failed the key proof for group db: the group keys differ"
			if !errors.Is(err, ErrAuthFailed) || !strings.Contains(err.Error(), want) {
				t.Fatalf("client: got %v, want %q", err, want)
			}
			// A client that ignores the error and pushes anyway gets nowhere.
			sendAsync(c, &Op{Seq: 1, Group: "db", Kind: OpDelete, Path: []byte("etc")})
			r := <-done
			t.Logf("sender: %v\nreceiver: %v", err, r.err)
			if r.err == nil || !strings.Contains(r.err.Error(), "group db") || r.groups != nil || r.next != nil {
				t.Fatalf("server: got err %v groups %q next %#v", r.err, r.groups, r.next)
			}
		})
	}
}

func TestHandshakeRefused(t *testing.T) {
	c, s := pipePair(t)
	done := runServer(s, map[string]string{"web": keyWeb, "db": keyDB},
		map[string][]string{"web": {"alpha"}, "db": {"gamma"}})
	_, err := ClientHandshake(c, "alpha", map[string][]byte{"web": []byte(keyWeb), "db": []byte(keyDB), "mail": []byte(keyDB)}, 0)
	for _, want := range []string{"peer beta refused", "group db: sender alpha is not a host of group db", "group mail: group mail unknown here"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("client: got %v, want it to mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "group web") {
		t.Fatalf("client error lists the accepted group web: %v", err)
	}
	r := <-done
	t.Logf("sender: %v\nreceiver: %v", err, r.err)
	if !errors.Is(r.err, ErrAuthFailed) || !strings.Contains(r.err.Error(), "not a host of group db") || r.groups != nil {
		t.Fatalf("server: got %v, groups %q", r.err, r.groups)
	}
}

// A hand-rolled sender: Hello, then whatever the test sends instead of a
// correct Auth.
func TestServerRejects(t *testing.T) {
	tests := []struct {
		name  string
		hello Hello
		auth  func(reply *HelloReply) Message
		want  string
	}{
		{"version too new", Hello{Version: 7, MinVersion: 5, Node: "alpha", Groups: []string{"web"}, Nonce: [32]byte{1}},
			nil, fmt.Sprintf("sender alpha speaks versions 5 to 7, receiver beta speaks %d to %d", MinVersion, Version)},
		{"no groups", Hello{Version: 1, MinVersion: 1, Node: "alpha", Nonce: [32]byte{1}}, nil, "offered no groups"},
		{"zero nonce", Hello{Version: 1, MinVersion: 1, Node: "alpha", Groups: []string{"web"}}, nil, "all-zero nonce"},
		{"duplicate group", Hello{Version: 1, MinVersion: 1, Node: "alpha", Groups: []string{"web", "web"}, Nonce: [32]byte{1}}, nil, "twice"},
		{"bad MAC", Hello{Version: 1, MinVersion: 1, Node: "alpha", Groups: []string{"web"}, Nonce: [32]byte{1}},
			func(*HelloReply) Message { return &Auth{Proofs: []GroupProof{{Group: "web", MAC: [32]byte{9}}}} },
			"group web: wrong group key"},
		{"replayed receiver proof", Hello{Version: 1, MinVersion: 1, Node: "alpha", Groups: []string{"web"}, Nonce: [32]byte{1}},
			func(r *HelloReply) Message { return &Auth{Proofs: r.Proofs} }, "group web: wrong group key"},
		{"no proof", Hello{Version: 1, MinVersion: 1, Node: "alpha", Groups: []string{"web"}, Nonce: [32]byte{1}},
			func(*HelloReply) Message { return &Auth{} }, "group web: wrong group key"},
		{"op instead of auth", Hello{Version: 1, MinVersion: 1, Node: "alpha", Groups: []string{"web"}, Nonce: [32]byte{1}},
			func(*HelloReply) Message { return &Op{Seq: 1, Group: "web", Kind: OpDelete, Path: []byte("x")} },
			"expected Auth, got Op"},
		{"unasked proof", Hello{Version: 1, MinVersion: 1, Node: "alpha", Groups: []string{"web"}, Nonce: [32]byte{1}},
			func(*HelloReply) Message { return &Auth{Proofs: []GroupProof{{Group: "db"}}} }, `group "db" it was not asked for`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, s := pipePair(t)
			done := runServer(s, map[string]string{"web": keyWeb, "db": keyDB}, map[string][]string{"web": {"alpha"}, "db": {"alpha"}})
			if err := sendFlush(c, &tc.hello); err != nil {
				t.Fatal(err)
			}
			m, err := c.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if tc.auth != nil {
				reply, ok := m.(*HelloReply)
				if !ok {
					t.Fatalf("got %#v, want HelloReply", m)
				}
				sendFlush(c, tc.auth(reply))
				m, err = c.Recv()
				if err != nil {
					t.Fatal(err)
				}
			}
			// The sender is told why: an Error or a refusing AuthResult.
			switch v := m.(type) {
			case *Error:
				if !strings.Contains(v.Message, tc.want) {
					t.Errorf("peer Error %q does not mention %q", v.Message, tc.want)
				}
			case *AuthResult:
				if v.OK || !strings.Contains(refusalText(v.Refused), tc.want) {
					t.Errorf("AuthResult %+v does not refuse with %q", v, tc.want)
				}
			default:
				t.Errorf("sender got %#v, want Error or AuthResult", m)
			}
			sendAsync(c, &Bye{})
			r := <-done
			if r.err == nil || !strings.Contains(r.err.Error(), tc.want) || r.groups != nil || r.next != nil {
				t.Fatalf("server: got err %v, groups %q, next %#v; want an error mentioning %q", r.err, r.groups, r.next, tc.want)
			}
		})
	}
}

// A hand-rolled receiver answering with a foreign version, or accepting
// without proving.
func TestClientRejects(t *testing.T) {
	tests := []struct {
		name  string
		reply func(h *Hello) []Message
		want  string
	}{
		{"version", func(h *Hello) []Message {
			return []Message{&HelloReply{Version: Version + 1, Node: "beta", Nonce: [32]byte{2}}}
		}, fmt.Sprintf("protocol version mismatch: the peer chose version %d", Version+1)},
		{"error", func(h *Hello) []Message {
			return []Message{&Error{Message: "receiver beta: disk full"}}
		}, "disk full"},
		{"ok without proof", func(h *Hello) []Message {
			return []Message{&HelloReply{Version: 1, Node: "beta", Nonce: [32]byte{2}}, &AuthResult{OK: true}}
		}, "accepted group web without proving its key"},
		{"echoed nonce", func(h *Hello) []Message {
			return []Message{&HelloReply{Version: 1, Node: "beta", Nonce: h.Nonce}}
		}, "echoed our nonce"},
		{"closed", func(h *Hello) []Message { return nil }, "peer closed the stream while HelloReply was expected"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c2sR, c2sW := io.Pipe()
			s2cR, s2cW := io.Pipe()
			defer c2sR.Close()
			c, s := NewConn(s2cR, c2sW), NewConn(c2sR, s2cW)
			go func() {
				defer s2cW.Close() // EOF for the client once the script is done
				m, err := s.Recv()
				if err != nil {
					return
				}
				go io.Copy(io.Discard, c2sR) // whatever the client says next
				replies := tc.reply(m.(*Hello))
				for _, r := range replies {
					s.Send(r)
					s.Flush()
				}
			}()
			_, err := ClientHandshake(c, "alpha", map[string][]byte{"web": []byte(keyWeb)}, 0)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestGroupMAC(t *testing.T) {
	n1, err := NewNonce()
	if err != nil {
		t.Fatal(err)
	}
	n2, _ := NewNonce()
	if n1 == n2 || n1 == ([32]byte{}) {
		t.Fatal("NewNonce returned a repeated or zero nonce")
	}
	base := GroupMAC([]byte(keyWeb), RoleSender, "web", "alpha", "beta", n1, n2)
	if base != GroupMAC([]byte(keyWeb), RoleSender, "web", "alpha", "beta", n1, n2) {
		t.Fatal("GroupMAC is not deterministic")
	}
	variants := map[string][32]byte{
		"key":      GroupMAC([]byte(keyDB), RoleSender, "web", "alpha", "beta", n1, n2),
		"role":     GroupMAC([]byte(keyWeb), RoleReceiver, "web", "alpha", "beta", n1, n2),
		"group":    GroupMAC([]byte(keyWeb), RoleSender, "db", "alpha", "beta", n1, n2),
		"sender":   GroupMAC([]byte(keyWeb), RoleSender, "web", "alph", "abeta", n1, n2),
		"nodes":    GroupMAC([]byte(keyWeb), RoleSender, "web", "beta", "alpha", n1, n2),
		"nonces":   GroupMAC([]byte(keyWeb), RoleSender, "web", "alpha", "beta", n2, n1),
		"boundary": GroupMAC([]byte(keyWeb), RoleSender, "webalpha", "", "beta", n1, n2),
	}
	for name, v := range variants {
		if v == base {
			t.Errorf("changing the %s does not change the MAC", name)
		}
	}
}

func TestReadKeyFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content, want, err string
	}{
		{"plain", keyDB + "\n", keyDB, ""},
		{"first line only, trimmed", "  " + keyWeb + " \r\nsecond line\n", keyWeb, ""},
		{"no newline", keyWeb, keyWeb, ""},
		{"short", "abc\n", "", "the key has 3 characters, at least 32"},
		{"empty", "", "", "the key has 0 characters"},
		{"bad char", strings.Repeat("a", 40) + "-x\n", "", "character 41 of the key is not one of [A-Za-z0-9._]"},
		{"huge line", strings.Repeat("a", 10000), "", "longer than 4096 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".key")
			if err := os.WriteFile(p, []byte(tc.content), 0600); err != nil {
				t.Fatal(err)
			}
			got, err := ReadKeyFile(p)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), p) {
					t.Fatalf("got %v, want an error naming %s and mentioning %q", err, p, tc.err)
				}
				if strings.Contains(err.Error(), "aaaaaaaa") {
					t.Fatalf("error leaks key material: %v", err)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := ReadKeyFile(filepath.Join(dir, "missing.key")); err == nil || !strings.Contains(err.Error(), "missing.key") {
		t.Fatalf("missing file: got %v", err)
	}
}
