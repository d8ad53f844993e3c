package ha

import (
	"context"
	"os"
	"slices"
	"testing"

	"ocf-csync/syncer/engine"
	"ocf-csync/syncer/engine/enginetest"
)

func TestCatchUp(t *testing.T) {
	nodes := enginetest.Nodes(t, "", "a", "b", "c")
	a, b, c := nodes["a"], nodes["b"], nodes["c"]
	a.Write(t, "d/one", "one")
	a.Write(t, "two", "two")
	a.Write(t, "gone", "deleted on a later")
	if err := a.Sync(t, nodes, engine.Options{}).Err(); err != nil {
		t.Fatal(err)
	}
	// b was down (not current): a changed two, deleted gone, added three;
	// b's admin added a file of b's own.
	a.Write(t, "two", "two, second version")
	a.Write(t, "three", "three")
	if err := os.Remove(a.Path("gone")); err != nil {
		t.Fatal(err)
	}
	checkTree(t, a)
	b.Write(t, "mine", "b's own")
	checkTree(t, b)
	r, err := CatchUp(context.Background(), b.CompareOptions(nodes), b.Store, "a", "")
	if err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{"two": "two, second version", "three": "three", "gone": "<missing>", "mine": "b's own", "d/one": "one"} {
		if got := b.Read(f); got != want {
			t.Errorf("%s on b after the catch-up = %q, want %q", f, got, want)
		}
	}
	if !slices.Contains(r.Kept, b.Path("mine")) || len(r.Conflicts) != 0 || len(r.Problems) != 0 || len(r.Pulled) != 3 {
		t.Errorf("catch-up: %+v; want two, three and gone pulled, mine kept, nothing else", r)
	}
	// c lost its disk: an empty tree and no state. It pulls everything.
	r, err = CatchUp(context.Background(), c.CompareOptions(nodes), c.Store, "a", "")
	if err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{"two": "two, second version", "three": "three", "d/one": "one"} {
		if got := c.Read(f); got != want {
			t.Errorf("%s on c after the catch-up = %q, want %q", f, got, want)
		}
	}
	// Pulled entries are agreed: a second compare finds nothing to do.
	if r2, err := CatchUp(context.Background(), c.CompareOptions(nodes), c.Store, "a", ""); err != nil || len(r2.Pulled)+len(r2.Conflicts) != 0 {
		t.Errorf("a second catch-up: %+v, %v; want nothing", r2, err)
	}
	_ = r
}
