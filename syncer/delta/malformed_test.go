package delta

import (
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"
)

func sigHeader(magic, blockLen, strongLen uint32) []byte {
	b := make([]byte, 12)
	binary.BigEndian.PutUint32(b[0:], magic)
	binary.BigEndian.PutUint32(b[4:], blockLen)
	binary.BigEndian.PutUint32(b[8:], strongLen)
	return b
}

func validSig(t testing.TB) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := writeSignature(bytes.NewReader(randBytes(20, 10000)), 2048, &b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestReadSignatureMalformed(t *testing.T) {
	good := validSig(t)
	for _, tc := range []struct {
		name  string
		in    []byte
		limit int64
		want  string // substring of the error
	}{
		{"empty", nil, 1 << 20, "truncated"},
		{"truncated header", good[:7], 1 << 20, "truncated"},
		{"truncated entry", good[:len(good)-5], 1 << 20, "truncated in block 4"},
		{"bad magic", concat(sigHeader(0x12345678, 2048, 32)), 1 << 20, "bad magic"},
		{"delta magic", concat(sigHeader(magicDelta, 2048, 32)), 1 << 20, "bad magic"},
		{"RabinKarp magic", concat(sigHeader(magicRkBlake2, 2048, 32)), 1 << 20, "RabinKarp"},
		{"zero block length", sigHeader(magicBlake2Sig, 0, 32), 1 << 20, "block length 0"},
		{"tiny block length", sigHeader(magicBlake2Sig, 511, 32), 1 << 20, "block length 511"},
		{"huge block length", sigHeader(magicBlake2Sig, 0xffffffff, 32), 1 << 20, "block length 4294967295"},
		{"zero strong length", sigHeader(magicBlake2Sig, 2048, 0), 1 << 20, "strong sum length 0"},
		{"blake2 strong length 33", sigHeader(magicBlake2Sig, 2048, 33), 1 << 20, "strong sum length 33"},
		{"md4 strong length 17", sigHeader(magicMD4Sig, 2048, 17), 1 << 20, "strong sum length 17"},
		{"huge strong length", sigHeader(magicBlake2Sig, 2048, 0xffffffff), 1 << 20, "strong sum length"},
		{"over the limit", good, int64(len(good)) - 1, "limit"},
		{"limit below header", good, 11, "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sig, err := ReadSignature(bytes.NewReader(tc.in), tc.limit)
			if err == nil {
				t.Fatalf("ReadSignature accepted it (%d blocks)", sig.Blocks())
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestReadSignatureValid(t *testing.T) {
	good := validSig(t)
	for _, tc := range []struct {
		name   string
		in     []byte
		blocks int
	}{
		{"five blocks", good, 5},
		{"header only", good[:12], 0},
		{"md4, 8-byte sums", concat(sigHeader(magicMD4Sig, 1024, 8), make([]byte, 12*3)), 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sig, err := ReadSignature(bytes.NewReader(tc.in), int64(len(tc.in)))
			if err != nil {
				t.Fatal(err)
			}
			if sig.Blocks() != tc.blocks {
				t.Errorf("%d blocks, want %d", sig.Blocks(), tc.blocks)
			}
		})
	}
}

func deltaOf(ops ...[]byte) []byte {
	return concat(append([][]byte{{0x72, 0x73, 0x02, 0x36}}, ops...)...)
}

func TestPatchMalformed(t *testing.T) {
	basis := randBytes(21, 1000)
	for _, tc := range []struct {
		name   string
		delta  []byte
		maxOut int64
		want   string
	}{
		{"empty", nil, -1, "truncated"},
		{"bad magic", []byte{0x72, 0x73, 0x01, 0x37, 0}, -1, "bad delta magic"},
		{"no END", deltaOf([]byte{0x02, 'h', 'i'}), -1, "truncated before its END"},
		{"copy beyond basis", deltaOf([]byte{opCopyN1N1 + 4 + 1, 0x03, 0x00, 0x00, 0xff}, []byte{0}), -1, "basis has only 1000 bytes"},
		{"copy offset beyond basis", deltaOf([]byte{opCopyN1N1 + 4, 0x10, 0x00, 0x01}, []byte{0}), -1, "basis has only"},
		{"copy offset 2^64-1", deltaOf([]byte{opCopyN8N8 - 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1}, []byte{0}), -1, "out of range"},
		{"copy length 2^63", deltaOf([]byte{opCopyN8N8, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0}, []byte{0}), -1, "out of range"},
		{"copy offset+length overflow", deltaOf([]byte{opCopyN8N8, 0, 0, 0, 0, 0, 0, 0, 1, 0x3f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, []byte{0}), -1, "basis has only"},
		{"truncated copy params", deltaOf([]byte{opCopyN1N1 + 5, 0x01}), -1, "truncated"},
		{"literal too long", deltaOf([]byte{opLiteralN1 + 2, 0x10, 0x00, 0x00, 0x01}), -1, "limit"},
		{"truncated literal", deltaOf([]byte{opLiteralN1, 200}, []byte("short")), -1, "truncated inside"},
		{"reserved command", deltaOf([]byte{0x55}), -1, "unknown delta command"},
		{"command 0xff", deltaOf([]byte{0xff}), -1, "unknown delta command"},
		{"output over maxOut", deltaOf([]byte{opCopyN1N1 + 1, 0, 0x03, 0xe8}, []byte{opCopyN1N1 + 1, 0, 0x03, 0xe8}, []byte{0}), 1500, "more than the expected 1500"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := PatchLimit(bytes.NewReader(basis), bytes.NewReader(tc.delta), io.Discard, tc.maxOut)
			if err == nil {
				t.Fatal("PatchLimit accepted it")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// Hand-built deltas using every parameter width give the expected output.
func TestPatchOpcodes(t *testing.T) {
	basis := randBytes(22, 70000)
	for _, tc := range []struct {
		name  string
		delta []byte
		want  []byte
	}{
		{"immediate literal", deltaOf([]byte{0x03, 'a', 'b', 'c', 0}), []byte("abc")},
		{"literal N2", deltaOf([]byte{opLiteralN1 + 1, 0, 2, 'h', 'i', 0}), []byte("hi")},
		{"copy N1 N1", deltaOf([]byte{opCopyN1N1, 10, 5, 0}), basis[10:15]},
		{"copy N2 N4", deltaOf([]byte{opCopyN1N1 + 4 + 2, 0x01, 0x00, 0, 0, 0, 7, 0}), basis[256:263]},
		{"copy N4 N2", deltaOf([]byte{opCopyN1N1 + 8 + 1, 0, 1, 0, 0, 0x01, 0x00, 0}), basis[65536 : 65536+256]},
		{"copy N8 N1 up to the end", deltaOf([]byte{opCopyN8N8 - 3, 0, 0, 0, 0, 0, 1, 0x11, 0x6f, 1, 0}), basis[69999:]},
		{"zero-length copy at the end", deltaOf([]byte{opCopyN1N1 + 8, 0, 1, 0x11, 0x70, 0, 0}), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := Patch(bytes.NewReader(basis), bytes.NewReader(tc.delta), &out); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), tc.want) {
				t.Errorf("got %d bytes %x, want %d bytes", out.Len(), out.Bytes()[:min(out.Len(), 16)], len(tc.want))
			}
		})
	}
}
