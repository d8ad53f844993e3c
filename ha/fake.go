package ha

import (
	"context"
	"fmt"
	"maps"
	"sync"
)

// Fake is an in-memory Pacemaker for tests (here and in packages that use
// ha). The zero value is "Pacemaker not running"; set Running and the
// fields. It is safe for concurrent use.
type Fake struct {
	mu      sync.Mutex
	Running bool
	Node    string                                    // this node's name
	St      ClusterStatus                             // returned by Status (a copy)
	IPRes   map[string]string                         // ip → resource id for ResourceForIP
	Attrs   map[string]map[Lifetime]map[string]string // node → lifetime → name → value
	Err     error                                     // when set, every call fails with it
	Calls   []string                                  // what was asked, e.g. "set node2 csync-epoch=3 forever"
}

// fakeCheck records a call and returns the error every call should fail
// with, if any.
func (f *Fake) fakeCheck(call string) error {
	f.Calls = append(f.Calls, call)
	if f.Err != nil {
		return f.Err
	}
	if !f.Running {
		return fmt.Errorf("fake %s: %w", call, ErrNotRunning)
	}
	return nil
}

func (f *Fake) Status(ctx context.Context) (*ClusterStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fakeCheck("status"); err != nil {
		return nil, err
	}
	s := f.St
	return &s, nil
}

func (f *Fake) NodeName(ctx context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fakeCheck("node-name"); err != nil {
		return "", err
	}
	return f.Node, nil
}

func (f *Fake) SetNodeAttribute(ctx context.Context, node, name, value string, lifetime Lifetime) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if node == "" {
		node = f.Node
	}
	if err := f.fakeCheck(fmt.Sprintf("set %s %s=%s %s", node, name, value, lifetime)); err != nil {
		return err
	}
	if err := checkLifetime(lifetime); err != nil {
		return err
	}
	if f.Attrs == nil {
		f.Attrs = map[string]map[Lifetime]map[string]string{}
	}
	if f.Attrs[node] == nil {
		f.Attrs[node] = map[Lifetime]map[string]string{}
	}
	if f.Attrs[node][lifetime] == nil {
		f.Attrs[node][lifetime] = map[string]string{}
	}
	f.Attrs[node][lifetime][name] = value
	return nil
}

func (f *Fake) GetNodeAttribute(ctx context.Context, node, name string, lifetime Lifetime) (string, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if node == "" {
		node = f.Node
	}
	if err := f.fakeCheck(fmt.Sprintf("get %s %s %s", node, name, lifetime)); err != nil {
		return "", false, err
	}
	v, ok := f.Attrs[node][lifetime][name]
	return v, ok, nil
}

func (f *Fake) NodeAttributes(ctx context.Context, name string) (map[string]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fakeCheck("node-attributes " + name); err != nil {
		return nil, err
	}
	m := map[string]string{}
	for node, byLife := range f.Attrs {
		if v, ok := byLife[Forever][name]; ok {
			m[node] = v
		}
	}
	return m, nil
}

func (f *Fake) ResourceForIP(ctx context.Context, ip string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fakeCheck("resource-for-ip " + ip); err != nil {
		return "", err
	}
	return f.IPRes[bareIP(ip)], nil
}

// CallLog returns a copy of the calls made so far.
func (f *Fake) CallLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.Calls...)
}

// AttrSnapshot returns a copy of the permanent attributes of node.
func (f *Fake) AttrSnapshot(node string) map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.Attrs[node][Forever])
}
