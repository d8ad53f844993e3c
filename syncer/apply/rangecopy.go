package apply

import (
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// asyncHashMin is the size from which a received file is hashed on a
// goroutine of its own, in parallel with reading and writing it.
const asyncHashMin = 16 << 20

// hashBufSize is the piece of content copied or queued for hashing at once.
const hashBufSize = 1 << 20

var hashBufs = sync.Pool{New: func() any { b := make([]byte, hashBufSize); return &b }}

// hashQueue hashes, in order, the buffers handed to it, on its own
// goroutine; a few in flight bound its memory.
type hashQueue struct {
	q    chan []byte
	done chan struct{}
	cur  []byte // small writes gathered into one buffer
	once sync.Once
}

func newHashQueue(h hash.Hash) *hashQueue {
	q := &hashQueue{q: make(chan []byte, 4), done: make(chan struct{})}
	go func() {
		defer close(q.done)
		for b := range q.q {
			h.Write(b)
			b = b[:cap(b)]
			hashBufs.Put(&b)
		}
	}()
	return q
}

// write queues a copy of p (the caller reuses p).
func (q *hashQueue) write(p []byte) {
	for len(p) > 0 {
		if q.cur == nil {
			q.cur = (*hashBufs.Get().(*[]byte))[:0]
		}
		k := copy(q.cur[len(q.cur):cap(q.cur)], p)
		q.cur = q.cur[:len(q.cur)+k]
		p = p[k:]
		if len(q.cur) == cap(q.cur) {
			q.q <- q.cur
			q.cur = nil
		}
	}
}

// give queues b itself, a buffer from hashBufs that the caller lets go.
func (q *hashQueue) give(b []byte) {
	if q.cur != nil {
		q.q <- q.cur
		q.cur = nil
	}
	q.q <- b
}

// finish hashes what is queued and stops the goroutine; it may be called
// more than once.
func (q *hashQueue) finish() {
	q.once.Do(func() {
		if q.cur != nil {
			q.q <- q.cur
			q.cur = nil
		}
		close(q.q)
		<-q.done
	})
}

// writebackEvery is how much of a big temp file is written before the
// kernel is asked to start writing it to disk (sync_file_range, which does
// not wait): the fsync or syncfs that makes it durable before the ack then
// finds most of it on disk already.
const writebackEvery = 32 << 20

// startWriteback asks for the writeback of what reached the file since the
// last call, once that is writebackEvery bytes.
func (c *countWriter) startWriteback() {
	to := c.n - int64(c.bw.Buffered())
	if to-c.written < writebackEvery {
		return
	}
	// Advice only: an error changes nothing that the final sync does not do.
	_ = unix.SyncFileRange(int(c.f.Fd()), c.written, to-c.written, unix.SYNC_FILE_RANGE_WRITE)
	c.written = to
}

// hashed hands b (from hashBufs) to the hash, in order.
func (c *countWriter) hashed(b []byte) {
	if c.hq != nil {
		c.hq.give(b)
		return
	}
	c.h.Write(b)
	b = b[:cap(b)]
	hashBufs.Put(&b)
}

// Where the file system cannot share extents, the first failure says so
// for the process.
var noClone atomic.Bool

// cloneAlign is the alignment FICLONERANGE needs (the file system block;
// 4 KiB on the Linux file systems that share extents).
const cloneAlign = 4096

// WriteRange appends n bytes at off of src (the delta's basis) to the temp
// file. Where the file system shares extents (btrfs, XFS) the range is
// cloned (FICLONERANGE: no data written at all), then read back from the
// temp file and hashed: the whole-file hash covers what the temp file
// holds, not src, which may change meanwhile. Elsewhere (ext4) the bytes
// are read, written and hashed from one buffer: copy_file_range copies
// in the kernel but the hash then needs them read back, and on ext4 it
// measured slower than read+write even before that.
func (c *countWriter) WriteRange(src *os.File, off, n int64) error {
	if err := c.bw.Flush(); err != nil {
		return err
	}
	if !noClone.Load() && off%cloneAlign == 0 && c.n%cloneAlign == 0 && n%cloneAlign == 0 {
		dst := c.n
		err := unix.IoctlFileCloneRange(int(c.f.Fd()), &unix.FileCloneRange{
			Src_fd: int64(src.Fd()), Src_offset: uint64(off), Src_length: uint64(n), Dest_offset: uint64(dst)})
		if err == nil {
			if _, err := c.f.Seek(dst+n, io.SeekStart); err != nil {
				return fmt.Errorf("seek temp file: %w", err)
			}
			if err := c.readBack(dst, n); err != nil {
				return err
			}
			c.n += n
			return nil
		}
		if !cloneUnsupported(err) {
			return fmt.Errorf("clone %d bytes at %d of the basis: %w", n, off, err)
		}
		noClone.Store(true)
	}
	for n > 0 {
		b := (*hashBufs.Get().(*[]byte))[:min(hashBufSize, n)]
		k, err := src.ReadAt(b, off)
		if k < len(b) {
			hashBufs.Put(&b)
			if err == io.EOF || err == nil {
				return fmt.Errorf("the basis ended at %d while %d bytes were still to copy (did it change?)", off+int64(k), n-int64(k))
			}
			return fmt.Errorf("read basis at %d: %w", off+int64(k), err)
		}
		if _, err := c.f.Write(b); err != nil {
			hashBufs.Put(&b)
			return err
		}
		c.hashed(b)
		off += int64(k)
		n -= int64(k)
		c.n += int64(k)
		if c.hq != nil {
			c.startWriteback()
		}
	}
	return nil
}

// readBack hashes n bytes of the temp file at dst.
func (c *countWriter) readBack(dst, n int64) error {
	for p := dst; p < dst+n; {
		b := (*hashBufs.Get().(*[]byte))[:min(hashBufSize, dst+n-p)]
		k, err := c.f.ReadAt(b, p)
		if k < len(b) {
			hashBufs.Put(&b)
			return fmt.Errorf("read back the temp file at %d: %w", p+int64(k), err)
		}
		c.hashed(b)
		p += int64(k)
	}
	return nil
}

// cloneUnsupported tells "this file system cannot share extents" from a
// real error.
func cloneUnsupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) ||
		errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EBADF)
}
