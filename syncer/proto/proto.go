// Package proto is the wire protocol between a pushing node (the sender) and
// `ocf-csync serve` on a peer (the receiver), spoken over the stdin/stdout of
// an SSH exec channel.
//
// A stream is a sequence of frames:
//
//	[4-byte big-endian length][1-byte type][payload]
//
// where length counts the type byte and the payload and never exceeds
// MaxFrame. Payloads are encoded by hand (varints, length-prefixed byte
// strings, bounded list counts); a decoder refuses anything longer than the
// limits below and any trailing byte, so a hostile or confused peer can make
// Recv fail but never allocate more than one frame's worth.
//
// Session: Hello, HelloReply, Auth, AuthResult (see ClientHandshake and
// ServerHandshake), then pipelined Op/Data/DataEnd/EndBatch from the sender
// and Ack/Sig/BatchDone from the receiver, then Bye. Error is fatal from
// either side. Keepalive may come from the sender at any point between
// operations; it only counts as activity for the receiver's idle deadline.
//
// Version 2 adds FlagSession: the sender keeps the session open between
// pushes (the daemon's persistent session per peer). The receiver then
// takes its state database per batch (from the first operation after an
// idle time to BatchDone, everything of the batch recorded and its actions
// run) and holds nothing while the session idles, so the node's own
// commands never wait behind an open session.
package proto

import (
	"fmt"

	"ocf-csync/syncer/state"
)

// Version is the protocol version this build speaks; MinVersion the oldest
// it still accepts.
const (
	Version    = 2
	MinVersion = 1
)

// VersionSession is the first version whose receivers honour FlagSession.
const VersionSession = 2

// Limits. Every decoder checks them; every encoder refuses to exceed them
// (free text is truncated instead, so an error report always gets through).
const (
	MaxData    = 256 << 10    // bytes in one Data frame
	MaxFrame   = 1<<20 + 4096 // type byte + payload of one frame
	MaxPath    = 4096         // wire path, hardlink target, symlink target
	MaxName    = 255          // node and group names
	MaxText    = 4096         // human text: error messages, refusal reasons
	MaxGroups  = 128          // groups in Hello, proofs, refusals
	MaxErrors  = 128          // ActionErrors in BatchDone
	headerSize = 4            // length prefix
)

// Hello flags.
const (
	FlagDryRun uint32 = 1 << 0 // receiver reports what it would do, writes nothing
	// FlagFastSig: the sender reads signatures with XXH3-64 block sums
	// (delta.SignatureOptions.Fast). A receiver that does not know the
	// flag ignores it and sends SHA-256 ones, which every sender reads.
	FlagFastSig uint32 = 1 << 1
	// FlagSession: the session stays open between batches (version 2;
	// a version 1 receiver ignores it, so the sender only relies on it when
	// the session speaks version 2).
	FlagSession uint32 = 1 << 2
)

// MsgType is the type byte of a frame.
type MsgType uint8

const (
	MsgHello MsgType = iota + 1
	MsgHelloReply
	MsgAuth
	MsgAuthResult
	MsgOp
	MsgSigRequest
	MsgSig
	MsgData
	MsgDataEnd
	MsgAck
	MsgEndBatch
	MsgBatchDone
	MsgRequest
	MsgEntry
	MsgError
	MsgBye
	MsgHandoff
	MsgKeepalive
	msgEnd // one past the last valid type
)

var msgNames = [...]string{"invalid", "Hello", "HelloReply", "Auth", "AuthResult", "Op",
	"SigRequest", "Sig", "Data", "DataEnd", "Ack", "EndBatch", "BatchDone", "Request",
	"Entry", "Error", "Bye", "Handoff", "Keepalive"}

func (t MsgType) String() string {
	if t < msgEnd {
		return msgNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Message is one protocol message. Recv returns pointers (*Op, *Ack, ...);
// Send accepts pointers or values.
type Message interface{ Type() MsgType }

// OpKind says what an Op does on the receiver.
type OpKind uint8

const (
	OpDelete   OpKind = iota + 1
	OpMkdir           // create a directory (metadata follows in DirMeta)
	OpFile            // regular file; content per ContentKind
	OpSymlink         // New.Target holds the link target
	OpSpecial         // fifo, socket, char or block device (New.Kind, New.Rdev)
	OpHardlink        // link Path to LinkTo, an already synced path of the group
	OpDirMeta         // directory owner/mode/mtime, sent last
	OpMeta            // owner/mode/mtime only, content unchanged
	opKindEnd
)

var opNames = [...]string{"invalid", "delete", "mkdir", "file", "symlink", "special",
	"hardlink", "dirmeta", "meta"}

func (k OpKind) String() string {
	if k < opKindEnd {
		return opNames[k]
	}
	return fmt.Sprintf("opkind(%d)", uint8(k))
}

// ContentKind says how an OpFile's content follows.
type ContentKind uint8

const (
	ContentNone  ContentKind = iota // no content frames
	ContentWhole                    // Data frames with the whole file, then DataEnd
	ContentDelta                    // Data frames with an rsync delta against the Sig basis, then DataEnd
	contentEnd
)

// AckStatus is the receiver's verdict on one Op.
type AckStatus uint8

const (
	AckOK       AckStatus = iota + 1 // applied
	AckSame                          // receiver already had the new version; metadata aligned
	AckConflict                      // receiver's copy is neither base nor new: nothing written
	AckRefused                       // path outside the receiver's include set, slave, ...
	AckError                         // the receiver failed to apply; Message says why
	AckRetry                         // hash mismatch after patching: resend the whole file
	ackEnd
)

var ackNames = [...]string{"invalid", "ok", "same", "conflict", "refused", "error", "retry"}

func (s AckStatus) String() string {
	if s < ackEnd {
		return ackNames[s]
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// RequestKind is what a Request asks for.
type RequestKind uint8

const (
	RequestStat  RequestKind = iota + 1 // one Entry for Path
	RequestFetch                        // Entry, then the content as Data frames and DataEnd
	RequestList                         // an Entry per path under Path, then an Entry with empty Path
	requestEnd
)

// Record is the wire form of state.FileRecord: what a peer needs to compare
// and recreate an object. Ctime, inode, device and link count are local and
// never travel. Hash is carried for regular files only.
type Record struct {
	Kind    state.Kind
	Mode    uint32 // permission bits, st_mode & 07777
	UID     uint32
	GID     uint32
	Size    int64
	MtimeNs int64
	Rdev    uint64
	Target  string // symlink target, arbitrary bytes
	Hash    state.Hash
}

// RecordFrom keeps the fields of r that travel.
func RecordFrom(r state.FileRecord) Record {
	w := Record{Kind: r.Kind, Mode: r.Mode, UID: r.UID, GID: r.GID, Size: r.Size,
		MtimeNs: r.MtimeNs, Rdev: r.Rdev, Target: r.Target}
	if r.Kind == state.KindReg {
		w.Hash = r.Hash
	}
	return w
}

// FileRecord returns the record with the local-only fields zero.
func (r Record) FileRecord() state.FileRecord {
	return state.FileRecord{Kind: r.Kind, Mode: r.Mode, UID: r.UID, GID: r.GID, Size: r.Size,
		MtimeNs: r.MtimeNs, Rdev: r.Rdev, Target: r.Target, Hash: r.Hash}
}

// GroupProof is one side's HMAC over the handshake for one group.
type GroupProof struct {
	Group string
	MAC   [32]byte
}

// GroupRefusal says why the receiver refused a group.
type GroupRefusal struct {
	Group  string
	Reason string
}

// Hello opens a session (sender → receiver).
type Hello struct {
	Version    uint32 // highest version the sender speaks
	MinVersion uint32 // lowest version the sender accepts
	Node       string // sender's node name
	Groups     []string
	Nonce      [32]byte
	Flags      uint32 // FlagDryRun, ...
}

// HelloReply carries the receiver's name, nonce and its proofs of key
// knowledge for the groups it accepts (receiver → sender).
type HelloReply struct {
	Version uint32 // the version the session speaks
	Node    string // receiver's node name
	Nonce   [32]byte
	Proofs  []GroupProof
}

// Auth carries the sender's proofs (sender → receiver).
type Auth struct {
	Proofs []GroupProof
}

// AuthResult ends the handshake (receiver → sender).
type AuthResult struct {
	OK      bool
	Refused []GroupRefusal
}

// Op is one change to apply (sender → receiver). Base is the state the sender
// believes the receiver has (valid when HasBase); New is the target state.
type Op struct {
	Seq     uint64
	Group   string
	Kind    OpKind
	Path    []byte // wire name
	HasBase bool
	Base    Record
	New     Record
	Content ContentKind
	LinkTo  []byte // OpHardlink: wire name of the existing link target
	Forced  bool   // skip the receiver's conflict check (ocf-csync force)
}

// SigRequest asks for the signature of the receiver's copy of Path
// (sender → receiver).
type SigRequest struct {
	Seq       uint64
	Group     string
	Path      []byte
	BasisHint Record
}

// Sig answers a SigRequest (receiver → sender); when Have, the signature
// follows in Data frames and a DataEnd with the same Seq.
type Sig struct {
	Seq   uint64
	Have  bool
	Basis Record
}

// Data is one chunk of content, delta or signature (both directions).
type Data struct {
	Seq   uint64
	Bytes []byte // at most MaxData
}

// DataEnd closes a Data stream. For file content SHA256 is the hash of the
// whole new file.
type DataEnd struct {
	Seq    uint64
	SHA256 [32]byte
}

// Ack reports the outcome of an Op (receiver → sender). Current is the
// receiver's state after the Op (valid when HasCurrent), for the sender's base.
type Ack struct {
	Seq        uint64
	Status     AckStatus
	Message    string
	HasCurrent bool
	Current    Record
}

// EndBatch asks the receiver to run the queued actions (sender → receiver).
type EndBatch struct {
	Seq uint64
}

// BatchDone answers EndBatch once the actions ran (receiver → sender).
type BatchDone struct {
	Seq          uint64
	ActionsRun   uint32
	ActionErrors []string
}

// Request asks the receiver about its copy, for compare, diff and pull
// (sender → receiver).
type Request struct {
	Seq       uint64
	Kind      RequestKind
	Group     string
	Path      []byte
	Recursive bool
}

// Entry answers a Request (receiver → sender).
type Entry struct {
	Seq    uint64
	Path   []byte
	Exists bool
	Record Record
}

// Error is fatal: the side that sends it closes the stream afterwards.
type Error struct {
	Message string
}

// Bye ends a session cleanly (sender → receiver).
type Bye struct{}

func (Hello) Type() MsgType      { return MsgHello }
func (HelloReply) Type() MsgType { return MsgHelloReply }
func (Auth) Type() MsgType       { return MsgAuth }
func (AuthResult) Type() MsgType { return MsgAuthResult }
func (Op) Type() MsgType         { return MsgOp }
func (SigRequest) Type() MsgType { return MsgSigRequest }
func (Sig) Type() MsgType        { return MsgSig }
func (Data) Type() MsgType       { return MsgData }
func (DataEnd) Type() MsgType    { return MsgDataEnd }
func (Ack) Type() MsgType        { return MsgAck }
func (EndBatch) Type() MsgType   { return MsgEndBatch }
func (BatchDone) Type() MsgType  { return MsgBatchDone }
func (Request) Type() MsgType    { return MsgRequest }
func (Entry) Type() MsgType      { return MsgEntry }
func (Error) Type() MsgType      { return MsgError }
func (Bye) Type() MsgType        { return MsgBye }
func (Handoff) Type() MsgType    { return MsgHandoff }
func (Keepalive) Type() MsgType  { return MsgKeepalive }

// Handoff asks the receiver to record that the sender, a stopping active
// node, has brought it fully up to date (sender → receiver; answered by an
// Ack with the same Seq).
type Handoff struct {
	Seq    uint64
	Epoch  uint64
	From   string
	Clean  bool
	UpToNs int64
}

// Keepalive carries nothing: a sender that keeps a session open between
// batches sends it so the receiver's idle deadline does not end the
// session (sender → receiver; not answered).
type Keepalive struct{}

// Error makes a received *Error usable as a Go error.
func (e *Error) Error() string { return "peer reported an error: " + e.Message }
