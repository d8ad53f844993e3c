package config

import "testing"

// The expectations were taken from glibc's fnmatch(3) (via ctypes), which is
// what csync2 calls.
var fnmatchCases = []struct {
	pattern, name string
	flags         FnmFlags
	want          bool
}{
	{"/etc", "/etc", FnmPathname | FnmLeadingDir, true},
	{"/etc", "/etc/hosts", FnmPathname | FnmLeadingDir, true},
	{"/etc", "/etcx", FnmPathname | FnmLeadingDir, false},
	{"/etc", "/etc/", FnmPathname | FnmLeadingDir, true},
	{"/etc/*", "/etc/a/b", FnmPathname | FnmLeadingDir, true},
	{"/etc/*", "/etc/a/b", FnmPathname, false},
	{"/etc/*.conf", "/etc/x/y.conf", FnmPathname | FnmLeadingDir, false},
	{"/etc/*.conf", "/etc/x/y.conf", FnmLeadingDir, true},
	{"/srv/**/*.conf", "/srv/a/b/c.conf", FnmLeadingDir, true},
	{"/srv/*/x", "/srv/a/b/x", FnmLeadingDir, true},
	{"/srv/*/x", "/srv/a/b/x", FnmPathname | FnmLeadingDir, false},
	{"*.bak", "d.bak", 0, true},
	{"*.bak", "d.bak/x", FnmPathname, false},
	{"*~", "file~", 0, true},
	{".*.swp", ".a.swp", 0, true},
	{"*", "", 0, true},
	{"*", "/x", FnmPathname | FnmLeadingDir, true},
	{"?", "/", FnmPathname, false},
	{"?", "/", 0, true},
	{"[/]", "/", FnmPathname, false},
	{"[/]", "/", 0, true},
	{"[a-c]x", "bx", 0, true},
	{"[!a-c]x", "bx", 0, false},
	{"[^a-c]x", "dx", 0, true},
	{"[]a]", "]", 0, true},
	{"[!]]", "]", 0, false},
	{"[a-]", "-", 0, true},
	{"[[:digit:]]*", "7up", 0, true},
	{"[[:upper:]]", "a", 0, false},
	{"[[.a.]]", "a", 0, true},
	{"[[=b=]]", "b", 0, true},
	{"[[:foo:]]", "f", 0, false},
	{"a[", "a[", 0, true},
	{"a[b", "a[b", 0, true},
	{`\*`, "*", 0, true},
	{`\*`, "x", 0, false},
	{`a\`, "a\\", 0, false},
	{`a\`, "a", 0, false},
	{`[\]]`, "]", 0, true},
	{`[a\-z]`, "-", 0, true},
	{`[a\-z]`, "b", 0, false},
	{"%homedir%/bob", "%homedir%/bob/x", FnmPathname | FnmLeadingDir, true},
	{"*a*b*c", "xaybzc", 0, true},
	{"*a*b*c", "xaybz/c", FnmPathname, false},
	{"a*/b", "ax/b", FnmPathname, true},
	{"/etc/ha.d", "/etc", FnmPathname, false},
	{"/etc", "/etc/ha.d", FnmPathname, false},
}

func TestFnMatch(t *testing.T) {
	for _, tt := range fnmatchCases {
		if got := FnMatch(tt.pattern, tt.name, tt.flags); got != tt.want {
			t.Errorf("FnMatch(%q, %q, %d) = %v, want %v", tt.pattern, tt.name, tt.flags, got, tt.want)
		}
	}
}

// A pattern made of many stars must not take exponential time.
func TestFnMatchManyStars(t *testing.T) {
	pat := "/*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b"
	name := "/"
	for i := 0; i < 2000; i++ {
		name += "a"
	}
	if FnMatch(pat, name, FnmPathname|FnmLeadingDir) {
		t.Fatal("matched without a 'b'")
	}
}
