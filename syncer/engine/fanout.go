package engine

import (
	"sync"

	"ocf-csync/syncer/state"
)

// readCache shares the small files of one push between its peers: each is
// opened, checked against the scan's record, read and hashed once, however
// many peers get it (DESIGN §11, fan-out). The peers stream their plans in
// the same path order, so an entry is usually taken by all of them soon
// after it was read; it is dropped once every peer took it, and when the
// cache holds more than readCacheBudget the oldest go (a peer far behind
// the others then reads the file itself).
type readCache struct {
	peers int // pushes sharing the cache: an entry taken this often is done

	mu    sync.Mutex
	m     map[string]*readEntry
	fifo  []*readEntry // in the order they were read, for the budget
	bytes int64
}

// readCacheBudget bounds the bytes the cache holds.
var readCacheBudget int64 = 16 << 20

// readEntry is one file as read for the first peer that sent it.
type readEntry struct {
	path string
	id   fileID
	once sync.Once
	// What sendFile needs: the content and its sha256, or why the file
	// was not sent.
	body    []byte
	hash    state.Hash
	problem string
	uses    int
	counted int64 // bytes of it in c.bytes (under c.mu)
	gone    bool  // out of the map (every peer took it, or over budget)
}

// fileID is what the scan recorded of a file: a push sends that version.
type fileID struct {
	dev, ino       uint64
	size           int64
	mtimeNs, ctime int64
}

func idOf(r *state.FileRecord) fileID {
	return fileID{dev: r.Dev, ino: r.Ino, size: r.Size, mtimeNs: r.MtimeNs, ctime: r.CtimeNs}
}

func newReadCache(peers int) *readCache {
	return &readCache{peers: peers, m: map[string]*readEntry{}}
}

// get returns the content of it as the first peer to ask read it with
// read (which must return a body of its own, not a reused buffer).
func (c *readCache) get(it *item, read func() ([]byte, state.Hash, string)) ([]byte, state.Hash, string) {
	id := idOf(&it.cur)
	c.mu.Lock()
	e := c.m[it.path]
	if e == nil || e.id != id {
		if e != nil {
			c.forget(e)
		}
		e = &readEntry{path: it.path, id: id}
		c.m[it.path] = e
		c.fifo = append(c.fifo, e)
	}
	e.uses++
	if e.uses >= c.peers {
		c.forget(e)
	}
	c.mu.Unlock()
	e.once.Do(func() {
		e.body, e.hash, e.problem = read()
		c.mu.Lock()
		if !e.gone {
			e.counted = int64(len(e.body))
			c.bytes += e.counted
			c.trim()
		}
		c.mu.Unlock()
	})
	return e.body, e.hash, e.problem
}

// forget takes e out of the map (with c.mu held); holders keep using it.
func (c *readCache) forget(e *readEntry) {
	if e.gone {
		return
	}
	e.gone = true
	if c.m[e.path] == e {
		delete(c.m, e.path)
	}
	c.bytes -= e.counted
	e.counted = 0
}

// trim drops the oldest entries while over budget, and the finished ones
// at the head of the fifo (with c.mu held).
func (c *readCache) trim() {
	for len(c.fifo) > 0 && (c.fifo[0].gone || c.bytes > readCacheBudget) {
		c.forget(c.fifo[0])
		c.fifo[0] = nil
		c.fifo = c.fifo[1:]
	}
}
