package proto

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"ocf-csync/syncer/config"
)

// Handshake errors, for errors.Is.
var (
	ErrVersion    = errors.New("protocol version mismatch")
	ErrAuthFailed = errors.New("group authentication failed")
)

// Roles bound into GroupMAC, so one side's proof can never be replayed as
// the other's.
const (
	RoleSender   = "sender"
	RoleReceiver = "receiver"
)

// NewNonce returns 32 random bytes.
func NewNonce() ([32]byte, error) {
	var n [32]byte
	if _, err := rand.Read(n[:]); err != nil {
		return n, fmt.Errorf("generate handshake nonce: %w", err)
	}
	return n, nil
}

// GroupMAC is the proof that one side knows a group's key: HMAC-SHA256 keyed
// with it over the role, the group, both node names and both nonces, each
// length-prefixed so no two inputs encode alike. Fresh nonces from both
// sides make every proof single-use; the key itself never travels.
func GroupMAC(key []byte, role, group, senderNode, receiverNode string, senderNonce, receiverNonce [32]byte) [32]byte {
	h := hmac.New(sha256.New, key)
	var b []byte
	b = append(b, "ocf-csync group proof v1\x00"...)
	for _, s := range []string{role, group, senderNode, receiverNode} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = append(b, senderNonce[:]...)
	b = append(b, receiverNonce[:]...)
	h.Write(b)
	var mac [32]byte
	h.Sum(mac[:0])
	return mac
}

// ClientHandshake runs the sender's side: Hello, verify the receiver's
// proofs, send its own, read the verdict. groups maps each group to push to
// its key. It fails if the peer speaks no common version, fails a key proof,
// or refuses any group; the error names the peer and the groups.
func ClientHandshake(c *Conn, node string, groups map[string][]byte, flags uint32) (peerNode string, err error) {
	peerNode, _, err = ClientHandshakeVersion(c, node, groups, flags)
	return peerNode, err
}

// ClientHandshakeVersion is ClientHandshake that also returns the version
// the session speaks (the receiver's choice).
func ClientHandshakeVersion(c *Conn, node string, groups map[string][]byte, flags uint32) (peerNode string, version uint32, err error) {
	peerNode, err = clientHandshake(c, node, groups, flags, &version)
	return peerNode, version, err
}

func clientHandshake(c *Conn, node string, groups map[string][]byte, flags uint32, version *uint32) (peerNode string, err error) {
	if err := checkName("node name", node); err != nil {
		return "", err
	}
	if len(groups) == 0 {
		return "", errors.New("handshake: no groups to offer")
	}
	if len(groups) > MaxGroups {
		return "", fmt.Errorf("handshake: %d groups, the protocol allows %d per connection", len(groups), MaxGroups)
	}
	names := make([]string, 0, len(groups))
	for g, key := range groups {
		if err := checkName("group name", g); err != nil {
			return "", err
		}
		if len(key) == 0 {
			return "", fmt.Errorf("handshake: group %s has an empty key", g)
		}
		names = append(names, g)
	}
	slices.Sort(names)
	snonce, err := NewNonce()
	if err != nil {
		return "", err
	}
	hello := &Hello{Version: Version, MinVersion: MinVersion, Node: node, Groups: names, Nonce: snonce, Flags: flags}
	if err := sendFlush(c, hello); err != nil {
		return "", fmt.Errorf("handshake: %w", err)
	}

	reply, err := recvAs[*HelloReply](c, "HelloReply")
	if err != nil {
		return "", fmt.Errorf("handshake: %w", err)
	}
	peer := reply.Node
	if reply.Version < MinVersion || reply.Version > Version {
		return peer, tell(c, fmt.Errorf("handshake with %s: %w: the peer chose version %d, this node speaks %d to %d; install the same ocf-csync version on all nodes",
			peer, ErrVersion, reply.Version, MinVersion, Version))
	}
	if err := checkName("peer node name", peer); err != nil {
		return "", tell(c, fmt.Errorf("handshake: %w", err))
	}
	*version = reply.Version
	if reply.Nonce == snonce {
		return peer, tell(c, fmt.Errorf("handshake with %s: the peer echoed our nonce", peer))
	}

	var auth Auth
	seen := make(map[string]bool, len(reply.Proofs))
	for _, p := range reply.Proofs {
		key, ok := groups[p.Group]
		if !ok || seen[p.Group] {
			return peer, tell(c, fmt.Errorf("handshake with %s: unexpected proof for group %q", peer, p.Group))
		}
		seen[p.Group] = true
		want := GroupMAC(key, RoleReceiver, p.Group, node, peer, snonce, reply.Nonce)
		if !hmac.Equal(want[:], p.MAC[:]) {
			msg := fmt.Sprintf("peer %s failed the key proof for group %s: the group keys differ", peer, p.Group)
			_ = sendFlush(c, &Error{Message: fmt.Sprintf("sender %s: %s", node, msg)})
			return peer, fmt.Errorf("handshake: %w: %s; make the key file of group %s identical on both nodes", ErrAuthFailed, msg, p.Group)
		}
		// Prove only to a peer that proved first: nobody without the key
		// collects our MACs.
		auth.Proofs = append(auth.Proofs, GroupProof{Group: p.Group,
			MAC: GroupMAC(key, RoleSender, p.Group, node, peer, snonce, reply.Nonce)})
	}
	if err := sendFlush(c, &auth); err != nil {
		return peer, fmt.Errorf("handshake with %s: %w", peer, err)
	}

	res, err := recvAs[*AuthResult](c, "AuthResult")
	if err != nil {
		return peer, fmt.Errorf("handshake with %s: %w", peer, err)
	}
	if !res.OK || len(res.Refused) > 0 {
		if len(res.Refused) == 0 {
			return peer, fmt.Errorf("handshake: %w: peer %s refused without a reason", ErrAuthFailed, peer)
		}
		return peer, fmt.Errorf("handshake: %w: peer %s refused %s", ErrAuthFailed, peer, refusalText(res.Refused))
	}
	if len(seen) != len(groups) {
		// An OK without a proof for every group would let an impostor
		// accept a group it has no key for.
		for _, g := range names {
			if !seen[g] {
				return peer, fmt.Errorf("handshake: %w: peer %s accepted group %s without proving its key", ErrAuthFailed, peer, g)
			}
		}
	}
	return peer, nil
}

// ServerHandshake runs the receiver's side. authorize returns the key of a
// group for a sender, or an error whose text is the refusal reason sent back
// ("sender X is not a host of group G", "group G unknown here", ...). The
// handshake is all or nothing: if any offered group is refused, both sides
// get an error listing every refusal, and the caller must close the stream.
func ServerHandshake(c *Conn, node string, authorize func(senderNode, group string) (key []byte, err error)) (senderNode string, groups []string, flags uint32, err error) {
	hello, err := recvAs[*Hello](c, "Hello")
	if err != nil {
		return "", nil, 0, fmt.Errorf("handshake: %w", err)
	}
	sender := hello.Node
	if hello.MinVersion > Version || hello.Version < MinVersion || hello.MinVersion > hello.Version {
		err := fmt.Errorf("%w: sender %s speaks versions %d to %d, receiver %s speaks %d to %d; install the same ocf-csync version on all nodes",
			ErrVersion, sender, hello.MinVersion, hello.Version, node, MinVersion, Version)
		_ = sendFlush(c, &Error{Message: err.Error()})
		return sender, nil, 0, fmt.Errorf("handshake: %w", err)
	}
	if err := checkHello(hello); err != nil {
		_ = sendFlush(c, &Error{Message: err.Error()})
		return sender, nil, 0, fmt.Errorf("handshake: %w", err)
	}

	rnonce, err := NewNonce()
	if err != nil {
		_ = sendFlush(c, &Error{Message: "receiver " + node + " cannot generate a nonce"})
		return sender, nil, 0, err
	}
	keys := make(map[string][]byte, len(hello.Groups))
	refused := make(map[string]string)
	// The session speaks the highest version both sides know.
	reply := &HelloReply{Version: min(hello.Version, Version), Node: node, Nonce: rnonce}
	for _, g := range hello.Groups {
		key, err := authorize(sender, g)
		switch {
		case err != nil:
			refused[g] = err.Error()
		case len(key) == 0:
			refused[g] = "group " + g + " has no key here"
		default:
			keys[g] = key
			reply.Proofs = append(reply.Proofs, GroupProof{Group: g,
				MAC: GroupMAC(key, RoleReceiver, g, sender, node, hello.Nonce, rnonce)})
		}
	}
	if err := sendFlush(c, reply); err != nil {
		return sender, nil, 0, fmt.Errorf("handshake with sender %s: %w", sender, err)
	}

	auth, err := recvAs[*Auth](c, "Auth")
	if err != nil {
		return sender, nil, 0, fmt.Errorf("handshake with sender %s: %w", sender, err)
	}
	proofs := make(map[string][32]byte, len(auth.Proofs))
	for _, p := range auth.Proofs {
		if _, ok := keys[p.Group]; !ok {
			err := fmt.Errorf("sender %s sent a proof for group %q it was not asked for", sender, p.Group)
			_ = sendFlush(c, &Error{Message: err.Error()})
			return sender, nil, 0, fmt.Errorf("handshake: %w", err)
		}
		if _, dup := proofs[p.Group]; dup {
			err := fmt.Errorf("sender %s sent two proofs for group %s", sender, p.Group)
			_ = sendFlush(c, &Error{Message: err.Error()})
			return sender, nil, 0, fmt.Errorf("handshake: %w", err)
		}
		proofs[p.Group] = p.MAC
	}
	var res AuthResult
	for _, g := range hello.Groups {
		if why, ok := refused[g]; ok {
			res.Refused = append(res.Refused, GroupRefusal{Group: g, Reason: why})
			continue
		}
		got, ok := proofs[g]
		want := GroupMAC(keys[g], RoleSender, g, sender, node, hello.Nonce, rnonce)
		if !ok || !hmac.Equal(want[:], got[:]) {
			res.Refused = append(res.Refused, GroupRefusal{Group: g, Reason: "wrong group key"})
		}
	}
	res.OK = len(res.Refused) == 0
	if err := sendFlush(c, &res); err != nil {
		return sender, nil, 0, fmt.Errorf("handshake with sender %s: %w", sender, err)
	}
	if !res.OK {
		return sender, nil, 0, fmt.Errorf("handshake: %w: refused sender %s: %s", ErrAuthFailed, sender, refusalText(res.Refused))
	}
	flags = hello.Flags
	if reply.Version < VersionSession {
		flags &^= FlagSession
	}
	return sender, hello.Groups, flags, nil
}

func checkHello(h *Hello) error {
	if err := checkName("sender node name", h.Node); err != nil {
		return err
	}
	if len(h.Groups) == 0 {
		return fmt.Errorf("sender %s offered no groups", h.Node)
	}
	seen := make(map[string]bool, len(h.Groups))
	for _, g := range h.Groups {
		if err := checkName("group name", g); err != nil {
			return err
		}
		if seen[g] {
			return fmt.Errorf("sender %s offered group %s twice", h.Node, g)
		}
		seen[g] = true
	}
	if h.Nonce == ([32]byte{}) {
		return fmt.Errorf("sender %s sent an all-zero nonce", h.Node)
	}
	return nil
}

// checkName refuses names that would garble log lines and error messages.
func checkName(what, s string) error {
	if s == "" {
		return fmt.Errorf("empty %s", what)
	}
	if len(s) > MaxName {
		return fmt.Errorf("%s %.40q... is longer than %d bytes", what, s, MaxName)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return fmt.Errorf("%s %q contains a space or control character", what, s)
		}
	}
	return nil
}

func refusalText(rs []GroupRefusal) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("group %s: %s", r.Group, r.Reason)
	}
	return strings.Join(parts, "; ")
}

// tell sends err to the peer as a fatal Error, best effort, so both logs say
// why the session ended, and returns err.
func tell(c *Conn, err error) error {
	_ = sendFlush(c, &Error{Message: err.Error()})
	return err
}

func sendFlush(c *Conn, m Message) error {
	if err := c.Send(m); err != nil {
		return err
	}
	return c.Flush()
}

// recvAs receives one message and requires it to be a *T. A peer Error
// becomes the returned error.
func recvAs[T Message](c *Conn, want string) (T, error) {
	var zero T
	m, err := c.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return zero, fmt.Errorf("peer closed the stream while %s was expected", want)
		}
		return zero, fmt.Errorf("receive %s: %w", want, err)
	}
	if e, ok := m.(*Error); ok {
		return zero, e
	}
	v, ok := m.(T)
	if !ok {
		return zero, tell(c, fmt.Errorf("%w: expected %s, got %s", ErrMalformed, want, m.Type()))
	}
	return v, nil
}

// ReadKeyFile returns the group key in path (config.ReadKey).
func ReadKeyFile(path string) ([]byte, error) { return config.ReadKey(path) }
