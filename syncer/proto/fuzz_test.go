package proto

import (
	"bytes"
	"io"
	"reflect"
	"runtime"
	"testing"
)

// FuzzRecv feeds arbitrary bytes to Recv. It must never panic, must
// allocate no more than a bound proportional to the input (plus one frame
// buffer), and every message it accepts must re-encode to something that
// decodes to the same value.
func FuzzRecv(f *testing.F) {
	var seed bytes.Buffer
	c := NewConn(nil, &seed)
	for _, m := range allMessages() {
		if m.Type() == MsgData {
			continue // keep seeds small
		}
		c.Send(m)
	}
	c.Flush()
	f.Add(seed.Bytes())
	f.Add([]byte{0, 0, 0, 2, byte(MsgBye), 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add(frame(MsgAuth, []byte{0x80, 0x80, 0x80, 0x80, 0x01}))

	f.Fuzz(func(t *testing.T, data []byte) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		before := ms.TotalAlloc

		c := NewConn(bytes.NewReader(data), io.Discard)
		var got []Message
		for {
			m, err := c.Recv()
			if err != nil {
				break
			}
			got = append(got, m)
		}

		runtime.ReadMemStats(&ms)
		// Two 64 KiB bufio buffers, at most one large-frame buffer, and
		// per message a struct plus copies of its fields.
		bound := uint64(2*bufSize+MaxFrame+64<<10) + 64*uint64(len(data))
		if used := ms.TotalAlloc - before; used > bound {
			t.Fatalf("Recv allocated %d bytes for %d input bytes, bound %d", used, len(data), bound)
		}

		var buf bytes.Buffer
		enc := NewConn(&buf, &buf)
		for _, m := range got {
			if err := enc.Send(m); err != nil {
				t.Fatalf("re-encode accepted %s: %v", m.Type(), err)
			}
		}
		enc.Flush()
		for _, want := range got {
			m, err := enc.Recv()
			if err != nil {
				t.Fatalf("decode re-encoded %s: %v", want.Type(), err)
			}
			if !reflect.DeepEqual(m, want) {
				t.Fatalf("%s changed in a round trip:\n got %+v\nwant %+v", want.Type(), m, want)
			}
		}
	})
}
