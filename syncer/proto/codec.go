package proto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"ocf-csync/syncer/state"
)

// Errors a caller may want to classify with errors.Is.
var (
	ErrFrameTooLarge = errors.New("frame exceeds the size limit")
	ErrTruncated     = errors.New("stream ended inside a frame")
	ErrMalformed     = errors.New("malformed message")
	ErrUnknownType   = errors.New("unknown message type")
	ErrTooLong       = errors.New("field exceeds its limit")
)

// encoder appends fields to b; the first limit violation sticks in err.
type encoder struct {
	b   []byte
	err error
}

func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) byte1(v uint8)    { e.b = append(e.b, v) }
func (e *encoder) fixed(v [32]byte) { e.b = append(e.b, v[:]...) }

func (e *encoder) boolean(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

func (e *encoder) bytes(what string, v []byte, max int) {
	if len(v) > max {
		e.fail(what, len(v), max)
		return
	}
	e.b = binary.AppendUvarint(e.b, uint64(len(v)))
	e.b = append(e.b, v...)
}

func (e *encoder) str(what, v string, max int) {
	if len(v) > max {
		e.fail(what, len(v), max)
		return
	}
	e.b = binary.AppendUvarint(e.b, uint64(len(v)))
	e.b = append(e.b, v...)
}

// text truncates instead of failing: a long error message must still arrive.
func (e *encoder) text(v string) {
	if len(v) > MaxText {
		cut := MaxText
		for cut > 0 && !utf8.RuneStart(v[cut]) {
			cut--
		}
		v = v[:cut]
	}
	e.str("text", v, MaxText)
}

func (e *encoder) count(what string, n, max int) bool {
	if n > max {
		if e.err == nil {
			e.err = fmt.Errorf("%w: %d %s, the limit is %d", ErrTooLong, n, what, max)
		}
		return false
	}
	e.uvarint(uint64(n))
	return true
}

func (e *encoder) fail(what string, n, max int) {
	if e.err == nil {
		e.err = fmt.Errorf("%w: %s of %d bytes, the limit is %d", ErrTooLong, what, n, max)
	}
}

func (e *encoder) record(r *Record) {
	e.byte1(uint8(r.Kind))
	e.uvarint(uint64(r.Mode))
	e.uvarint(uint64(r.UID))
	e.uvarint(uint64(r.GID))
	e.varint(r.Size)
	e.varint(r.MtimeNs)
	e.uvarint(r.Rdev)
	e.str("symlink target", r.Target, MaxPath)
	if r.Kind == state.KindReg {
		e.b = append(e.b, r.Hash[:]...)
	}
}

func (e *encoder) proofs(p []GroupProof) {
	if !e.count("group proofs", len(p), MaxGroups) {
		return
	}
	for i := range p {
		e.str("group name", p[i].Group, MaxName)
		e.fixed(p[i].MAC)
	}
}

// decoder reads fields from b; the first failure sticks in err and every
// later read returns a zero value, so message decoders need no checks.
type decoder struct {
	b   []byte
	err error
	// last decoded group name: Ops of one batch repeat it, and reusing the
	// string saves an allocation per message.
	lastGroup string
}

func (d *decoder) failf(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.failf("bad varint in %s", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) u32(what string) uint32 {
	v := d.uvarint(what)
	if v > math.MaxUint32 {
		d.failf("%s %d out of range", what, v)
		return 0
	}
	return uint32(v)
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.failf("bad varint in %s", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte1(what string) uint8 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.failf("missing %s", what)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) boolean(what string) bool {
	v := d.byte1(what)
	if v > 1 {
		d.failf("%s is %d, not a boolean", what, v)
	}
	return v == 1
}

func (d *decoder) fixed(what string) (v [32]byte) {
	if d.err != nil {
		return v
	}
	if len(d.b) < len(v) {
		d.failf("short %s", what)
		return v
	}
	copy(v[:], d.b)
	d.b = d.b[len(v):]
	return v
}

// raw returns a length-prefixed field aliasing the frame buffer.
func (d *decoder) raw(what string, max int) []byte {
	if d.err != nil {
		return nil
	}
	n, l := binary.Uvarint(d.b)
	if l <= 0 {
		d.failf("bad length of %s", what)
		return nil
	}
	d.b = d.b[l:]
	if n > uint64(max) {
		if d.err == nil {
			d.err = fmt.Errorf("%w: %s of %d bytes, the limit is %d", ErrTooLong, what, n, max)
		}
		return nil
	}
	if n > uint64(len(d.b)) {
		d.failf("%s of %d bytes runs past the frame end", what, n)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// bytes copies, because the frame buffer is reused by the next Recv.
func (d *decoder) bytes(what string, max int) []byte {
	v := d.raw(what, max)
	if len(v) == 0 {
		return nil
	}
	return append([]byte(nil), v...)
}

func (d *decoder) str(what string, max int) string {
	return string(d.raw(what, max))
}

func (d *decoder) group() string {
	v := d.raw("group name", MaxName)
	if string(v) == d.lastGroup { // compiles to a compare, no allocation
		return d.lastGroup
	}
	d.lastGroup = string(v)
	return d.lastGroup
}

// count reads a list length; each element takes at least minSize bytes, so a
// count the frame cannot hold is refused before anything is allocated.
func (d *decoder) count(what string, max, minSize int) int {
	if d.err != nil {
		return 0
	}
	n, l := binary.Uvarint(d.b)
	if l <= 0 {
		d.failf("bad count of %s", what)
		return 0
	}
	d.b = d.b[l:]
	if n > uint64(max) {
		d.err = fmt.Errorf("%w: %d %s, the limit is %d", ErrTooLong, n, what, max)
		return 0
	}
	if n*uint64(minSize) > uint64(len(d.b)) {
		d.failf("%d %s do not fit in the frame", n, what)
		return 0
	}
	return int(n)
}

// record decodes a Record; what ("base", "new", ...) prefixes an error.
func (d *decoder) record(what string) (r Record) {
	if d.err != nil {
		return r
	}
	k := d.byte1("kind")
	if k > uint8(state.KindSock) {
		d.failf("unknown file kind %d", k)
	}
	r.Kind = state.Kind(k)
	r.Mode = d.u32("mode")
	if r.Mode > 07777 {
		d.failf("mode %#o has more than permission bits", r.Mode)
	}
	r.UID = d.u32("uid")
	r.GID = d.u32("gid")
	r.Size = d.varint("size")
	if r.Size < 0 {
		d.failf("negative size %d", r.Size)
	}
	r.MtimeNs = d.varint("mtime")
	r.Rdev = d.uvarint("rdev")
	r.Target = d.str("symlink target", MaxPath)
	if r.Kind == state.KindReg {
		r.Hash = d.fixed("hash")
	}
	if d.err != nil {
		d.err = fmt.Errorf("%s record: %w", what, d.err)
		return Record{}
	}
	return r
}

func (d *decoder) proofs() []GroupProof {
	n := d.count("group proofs", MaxGroups, 1+32)
	if n == 0 {
		return nil
	}
	p := make([]GroupProof, n)
	for i := range p {
		p[i].Group = d.str("group name", MaxName)
		p[i].MAC = d.fixed("proof MAC")
	}
	return p
}

// wireMessage is what Send can encode; every message type in this package
// implements it.
type wireMessage interface {
	Message
	encode(e *encoder)
}

// wireDecoder is implemented by the pointer of every message type.
type wireDecoder interface {
	Message
	decode(d *decoder)
}

func newMessage(t MsgType) wireDecoder {
	switch t {
	case MsgHello:
		return new(Hello)
	case MsgHelloReply:
		return new(HelloReply)
	case MsgAuth:
		return new(Auth)
	case MsgAuthResult:
		return new(AuthResult)
	case MsgOp:
		return new(Op)
	case MsgSigRequest:
		return new(SigRequest)
	case MsgSig:
		return new(Sig)
	case MsgData:
		return new(Data)
	case MsgDataEnd:
		return new(DataEnd)
	case MsgAck:
		return new(Ack)
	case MsgEndBatch:
		return new(EndBatch)
	case MsgBatchDone:
		return new(BatchDone)
	case MsgRequest:
		return new(Request)
	case MsgEntry:
		return new(Entry)
	case MsgError:
		return new(Error)
	case MsgHandoff:
		return new(Handoff)
	case MsgBye:
		return new(Bye)
	case MsgKeepalive:
		return new(Keepalive)
	}
	return nil
}

func (m Hello) encode(e *encoder) {
	e.uvarint(uint64(m.Version))
	e.uvarint(uint64(m.MinVersion))
	e.str("node name", m.Node, MaxName)
	if e.count("groups", len(m.Groups), MaxGroups) {
		for _, g := range m.Groups {
			e.str("group name", g, MaxName)
		}
	}
	e.fixed(m.Nonce)
	e.uvarint(uint64(m.Flags))
}

func (m *Hello) decode(d *decoder) {
	m.Version = d.u32("version")
	m.MinVersion = d.u32("min version")
	m.Node = d.str("node name", MaxName)
	if n := d.count("groups", MaxGroups, 1); n > 0 {
		m.Groups = make([]string, n)
		for i := range m.Groups {
			m.Groups[i] = d.str("group name", MaxName)
		}
	}
	m.Nonce = d.fixed("nonce")
	m.Flags = d.u32("flags")
}

func (m HelloReply) encode(e *encoder) {
	e.uvarint(uint64(m.Version))
	e.str("node name", m.Node, MaxName)
	e.fixed(m.Nonce)
	e.proofs(m.Proofs)
}

func (m *HelloReply) decode(d *decoder) {
	m.Version = d.u32("version")
	m.Node = d.str("node name", MaxName)
	m.Nonce = d.fixed("nonce")
	m.Proofs = d.proofs()
}

func (m Auth) encode(e *encoder)  { e.proofs(m.Proofs) }
func (m *Auth) decode(d *decoder) { m.Proofs = d.proofs() }

func (m AuthResult) encode(e *encoder) {
	e.boolean(m.OK)
	if e.count("refusals", len(m.Refused), MaxGroups) {
		for _, r := range m.Refused {
			e.str("group name", r.Group, MaxName)
			e.text(r.Reason)
		}
	}
}

func (m *AuthResult) decode(d *decoder) {
	m.OK = d.boolean("ok")
	if n := d.count("refusals", MaxGroups, 2); n > 0 {
		m.Refused = make([]GroupRefusal, n)
		for i := range m.Refused {
			m.Refused[i].Group = d.str("group name", MaxName)
			m.Refused[i].Reason = d.str("reason", MaxText)
		}
	}
}

const (
	opHasBase = 1 << iota
	opForced
)

func (m Op) encode(e *encoder) {
	e.uvarint(m.Seq)
	e.str("group name", m.Group, MaxName)
	e.byte1(uint8(m.Kind))
	e.bytes("path", m.Path, MaxPath)
	var f uint8
	if m.HasBase {
		f |= opHasBase
	}
	if m.Forced {
		f |= opForced
	}
	e.byte1(f)
	if m.HasBase {
		e.record(&m.Base)
	}
	e.record(&m.New)
	e.byte1(uint8(m.Content))
	e.bytes("hardlink target", m.LinkTo, MaxPath)
}

func (m *Op) decode(d *decoder) {
	m.Seq = d.uvarint("seq")
	m.Group = d.group()
	m.Kind = OpKind(d.byte1("op kind"))
	if m.Kind == 0 || m.Kind >= opKindEnd {
		d.failf("unknown op kind %d", m.Kind)
	}
	m.Path = d.bytes("path", MaxPath)
	f := d.byte1("op flags")
	if f&^(opHasBase|opForced) != 0 {
		d.failf("unknown op flags %#x", f)
	}
	m.HasBase = f&opHasBase != 0
	m.Forced = f&opForced != 0
	if m.HasBase {
		m.Base = d.record("base")
	}
	m.New = d.record("new")
	m.Content = ContentKind(d.byte1("content kind"))
	if m.Content >= contentEnd {
		d.failf("unknown content kind %d", m.Content)
	}
	m.LinkTo = d.bytes("hardlink target", MaxPath)
}

func (m SigRequest) encode(e *encoder) {
	e.uvarint(m.Seq)
	e.str("group name", m.Group, MaxName)
	e.bytes("path", m.Path, MaxPath)
	e.record(&m.BasisHint)
}

func (m *SigRequest) decode(d *decoder) {
	m.Seq = d.uvarint("seq")
	m.Group = d.group()
	m.Path = d.bytes("path", MaxPath)
	m.BasisHint = d.record("basis hint")
}

func (m Sig) encode(e *encoder) {
	e.uvarint(m.Seq)
	e.boolean(m.Have)
	e.record(&m.Basis)
}

func (m *Sig) decode(d *decoder) {
	m.Seq = d.uvarint("seq")
	m.Have = d.boolean("have")
	m.Basis = d.record("basis")
}

func (m Data) encode(e *encoder) {
	e.uvarint(m.Seq)
	e.bytes("data chunk", m.Bytes, MaxData)
}

func (m *Data) decode(d *decoder) {
	m.Seq = d.uvarint("seq")
	m.Bytes = d.bytes("data chunk", MaxData)
}

func (m DataEnd) encode(e *encoder) {
	e.uvarint(m.Seq)
	e.fixed(m.SHA256)
}

func (m *DataEnd) decode(d *decoder) {
	m.Seq = d.uvarint("seq")
	m.SHA256 = d.fixed("sha256")
}

func (m Ack) encode(e *encoder) {
	e.uvarint(m.Seq)
	e.byte1(uint8(m.Status))
	e.text(m.Message)
	e.boolean(m.HasCurrent)
	if m.HasCurrent {
		e.record(&m.Current)
	}
}

func (m *Ack) decode(d *decoder) {
	m.Seq = d.uvarint("seq")
	m.Status = AckStatus(d.byte1("status"))
	if m.Status == 0 || m.Status >= ackEnd {
		d.failf("unknown ack status %d", m.Status)
	}
	m.Message = d.str("message", MaxText)
	m.HasCurrent = d.boolean("has current")
	if m.HasCurrent {
		m.Current = d.record("current")
	}
}

func (m EndBatch) encode(e *encoder)  { e.uvarint(m.Seq) }
func (m *EndBatch) decode(d *decoder) { m.Seq = d.uvarint("seq") }

func (m BatchDone) encode(e *encoder) {
	e.uvarint(m.Seq)
	e.uvarint(uint64(m.ActionsRun))
	if e.count("action errors", len(m.ActionErrors), MaxErrors) {
		for _, s := range m.ActionErrors {
			e.text(s)
		}
	}
}

func (m *BatchDone) decode(d *decoder) {
	m.Seq = d.uvarint("seq")
	m.ActionsRun = d.u32("actions run")
	if n := d.count("action errors", MaxErrors, 1); n > 0 {
		m.ActionErrors = make([]string, n)
		for i := range m.ActionErrors {
			m.ActionErrors[i] = d.str("action error", MaxText)
		}
	}
}

func (m Request) encode(e *encoder) {
	e.uvarint(m.Seq)
	e.byte1(uint8(m.Kind))
	e.str("group name", m.Group, MaxName)
	e.bytes("path", m.Path, MaxPath)
	e.boolean(m.Recursive)
}

func (m *Request) decode(d *decoder) {
	m.Seq = d.uvarint("seq")
	m.Kind = RequestKind(d.byte1("request kind"))
	if m.Kind == 0 || m.Kind >= requestEnd {
		d.failf("unknown request kind %d", m.Kind)
	}
	m.Group = d.group()
	m.Path = d.bytes("path", MaxPath)
	m.Recursive = d.boolean("recursive")
}

func (m Entry) encode(e *encoder) {
	e.uvarint(m.Seq)
	e.bytes("path", m.Path, MaxPath)
	e.boolean(m.Exists)
	if m.Exists {
		e.record(&m.Record)
	}
}

func (m *Entry) decode(d *decoder) {
	m.Seq = d.uvarint("seq")
	m.Path = d.bytes("path", MaxPath)
	m.Exists = d.boolean("exists")
	if m.Exists {
		m.Record = d.record("record")
	}
}

func (m Error) encode(e *encoder)  { e.text(m.Message) }
func (m *Error) decode(d *decoder) { m.Message = d.str("message", MaxText) }

func (Bye) encode(*encoder)  {}
func (*Bye) decode(*decoder) {}

func (Keepalive) encode(*encoder)  {}
func (*Keepalive) decode(*decoder) {}

func (m Handoff) encode(e *encoder) {
	e.uvarint(m.Seq)
	e.uvarint(m.Epoch)
	e.str("node name", m.From, MaxName)
	e.boolean(m.Clean)
	e.varint(m.UpToNs)
}

func (m *Handoff) decode(d *decoder) {
	m.Seq = d.uvarint("seq")
	m.Epoch = d.uvarint("epoch")
	m.From = d.str("node name", MaxName)
	m.Clean = d.boolean("clean")
	m.UpToNs = d.varint("time")
}
