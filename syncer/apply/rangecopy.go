package apply

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Where the file system cannot share extents (FICLONERANGE) or copy in the
// kernel (copy_file_range), the first failure says so for the process.
var noClone, noCopyRange atomic.Bool

// cloneAlign is the alignment FICLONERANGE needs (the file system block;
// 4 KiB on every Linux file system that shares extents).
const cloneAlign = 4096

var rangeBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// WriteRange appends n bytes at off of src to the temp file without
// reading them into this process: as a shared extent where the file system
// can (btrfs, XFS: no data written at all), else with copy_file_range. The
// whole-file hash must cover what the temp file really holds, so the range
// is then read back from the temp file, not from src (which may change
// meanwhile), and hashed.
func (c *countWriter) WriteRange(src *os.File, off, n int64) error {
	if c.f == nil || noCopyRange.Load() {
		return c.copyThrough(src, off, n)
	}
	if err := c.bw.Flush(); err != nil {
		return err
	}
	dst := c.n // the temp file is written from 0, in order
	done, err := kernelCopy(src, off, c.f, dst, n)
	if err != nil {
		return err
	}
	if _, err := c.f.Seek(dst+done, io.SeekStart); err != nil {
		return fmt.Errorf("seek temp file: %w", err)
	}
	if done < n { // copy_file_range is not there: the usual way
		if err := c.copyThrough(src, off+done, n-done); err != nil {
			return err
		}
	}
	bp := rangeBufs.Get().(*[]byte)
	defer rangeBufs.Put(bp)
	buf := *bp
	for p := dst; p < dst+done; {
		k, err := c.f.ReadAt(buf[:min(int64(len(buf)), dst+done-p)], p)
		if k == 0 && err != nil {
			return fmt.Errorf("read back the temp file at %d: %w", p, err)
		}
		c.h.Write(buf[:k])
		p += int64(k)
	}
	c.n += done
	return nil
}

// kernelCopy copies n bytes at off of src to dst at doff in the kernel and
// returns how many it copied: fewer than n (0 included) only when this
// file system cannot, or src ended early (then with an error).
func kernelCopy(src *os.File, off int64, dst *os.File, doff, n int64) (int64, error) {
	if !noClone.Load() && off%cloneAlign == 0 && doff%cloneAlign == 0 && n%cloneAlign == 0 {
		err := unix.IoctlFileCloneRange(int(dst.Fd()), &unix.FileCloneRange{
			Src_fd: int64(src.Fd()), Src_offset: uint64(off), Src_length: uint64(n), Dest_offset: uint64(doff)})
		if err == nil {
			return n, nil
		}
		if !unsupported(err) {
			return 0, fmt.Errorf("clone %d bytes at %d of the basis: %w", n, off, err)
		}
		noClone.Store(true)
	}
	var done int64
	for done < n {
		so, do := off+done, doff+done
		k, err := unix.CopyFileRange(int(src.Fd()), &so, int(dst.Fd()), &do, int(min(n-done, 1<<30)), 0)
		if err != nil {
			if done == 0 && unsupported(err) {
				noCopyRange.Store(true)
				return 0, nil
			}
			return done, fmt.Errorf("copy %d bytes at %d of the basis: %w", n-done, so, err)
		}
		if k == 0 {
			return done, fmt.Errorf("the basis ended at %d while copying %d bytes at %d (did it change?)", so, n, off)
		}
		done += int64(k)
	}
	return done, nil
}

// unsupported tells "this file system or kernel cannot" from a real error.
func unsupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) ||
		errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EBADF)
}

// copyThrough is WriteRange through this process's memory.
func (c *countWriter) copyThrough(src *os.File, off, n int64) error {
	bp := rangeBufs.Get().(*[]byte)
	defer rangeBufs.Put(bp)
	buf := *bp
	for n > 0 {
		k, err := src.ReadAt(buf[:min(int64(len(buf)), n)], off)
		if k > 0 {
			if _, werr := c.Write(buf[:k]); werr != nil {
				return werr
			}
			off += int64(k)
			n -= int64(k)
		}
		if n > 0 && err != nil {
			if err == io.EOF {
				return fmt.Errorf("the basis ended at %d while %d bytes were still to copy (did it change?)", off, n)
			}
			return fmt.Errorf("read basis at %d: %w", off, err)
		}
	}
	return nil
}
