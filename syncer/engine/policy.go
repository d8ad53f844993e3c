package engine

import (
	"fmt"
	"time"

	"ocf-csync/syncer/config"
	"ocf-csync/syncer/state"
)

// futureSkew is how far past this node's clock an mtime may lie before
// auto younger/older stops trusting it.
const futureSkew = 5 * time.Minute

// Winner is the side an automatic conflict resolution picks.
type Winner int

const (
	Unresolved Winner = iota // nobody: the conflict stays for a human
	LocalWins                // the pushing node re-sends its version forced
	PeerWins                 // the peer's version stays; it arrives here when the peer pushes
)

func (w Winner) String() string {
	switch w {
	case LocalWins:
		return "local"
	case PeerWins:
		return "peer"
	}
	return "unresolved"
}

// Side is one version in a conflict; Exists is false for a deletion.
type Side struct {
	Exists bool
	Rec    state.FileRecord
}

// Decide resolves a conflict between this node (local) and peer in group g
// as csync2's get_auto_method does (csync2.md §3.6):
//   - pushing to a slave: the local side wins, whatever auto says; a slave
//     never wins (and never pushes: buildPlan skips it);
//   - first: the pushing side wins;
//   - left/right: the host listed first/last of the two wins;
//   - younger/older/bigger/smaller: compare mtime/size; a local deletion
//     never wins; a peer deletion loses; equal values resolve nothing, and
//     neither does an mtime more than futureSkew ahead of this node's clock;
//   - none (the default): nothing is resolved.
//
// The reason says why, for the log and the conflict record.
func Decide(g *config.GroupView, peer string, local, remote Side) (Winner, string) {
	self := g.Self.Name
	switch {
	case g.IsSlave(peer) && !g.IsSlave(self):
		return LocalWins, fmt.Sprintf("%s is a slave in group %s", peer, g.Name)
	case g.IsSlave(self) && !g.IsSlave(peer):
		return PeerWins, fmt.Sprintf("%s is a slave in group %s", self, g.Name)
	}
	method := g.Auto
	switch method {
	case "first":
		return LocalWins, "auto first: the side that pushes first wins"
	case "left", "right":
		peerLeft := g.LeftOf(peer)
		if (method == "left") == peerLeft {
			return PeerWins, fmt.Sprintf("auto %s: %s is listed %s of %s", method, peer, sideWord(peerLeft), self)
		}
		return LocalWins, fmt.Sprintf("auto %s: %s is listed %s of %s", method, self, sideWord(!peerLeft), peer)
	case "younger", "older", "bigger", "smaller":
		if !local.Exists {
			return Unresolved, fmt.Sprintf("auto %s never lets a deletion win", method)
		}
		if !remote.Exists {
			return LocalWins, fmt.Sprintf("auto %s: the peer deleted it, and a deletion never wins", method)
		}
		var l, r int64
		if method == "younger" || method == "older" {
			l, r = local.Rec.MtimeNs, remote.Rec.MtimeNs
			// A time in the future is a wrong clock (on that node or where
			// the file came from), and it would win every later conflict
			// under younger: leave it to a human.
			limit := time.Now().Add(futureSkew).UnixNano()
			for _, v := range []struct {
				node string
				ns   int64
			}{{self, l}, {peer, r}} {
				if v.ns > limit {
					return Unresolved, fmt.Sprintf("auto %s: the version on %s has an mtime in the future (%s), a wrong clock there or on the file's origin; not resolved automatically",
						method, v.node, time.Unix(0, v.ns).UTC().Format(time.RFC3339))
				}
			}
		} else {
			l, r = local.Rec.Size, remote.Rec.Size
		}
		if l == r {
			return Unresolved, fmt.Sprintf("auto %s: both versions have the same %s", method, quantity(method))
		}
		localMore := l > r
		if (method == "younger" || method == "bigger") == localMore {
			return LocalWins, fmt.Sprintf("auto %s: the local version is %s", method, method)
		}
		return PeerWins, fmt.Sprintf("auto %s: the version on %s is %s", method, peer, method)
	}
	return Unresolved, "auto none"
}

func sideWord(left bool) string {
	if left {
		return "left"
	}
	return "right"
}

func quantity(method string) string {
	if method == "younger" || method == "older" {
		return "mtime"
	}
	return "size"
}
