package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// The csync2 personality (DESIGN §1): called as "csync2", or as
// "ocf-csync csync2 ARGS", the binary takes csync2's letter flags the way
// csync2 2.0 parses them (getopt "W:s:Ftp:G:P:C:D:N:HBAIXULlSTMRvhcuoimfxrd"
// plus a lone "-k FILE"), runs the matching ocf-csync command, and keeps
// csync2's exit codes and its "Finished with N errors." line.

// csync2Opts is a parsed csync2 command line.
type csync2Opts struct {
	mode    byte // x, c, u (c then u: 'C'), h, m, f, o, i, H, L, M, S, T, R, k
	inetd   int  // -i count: 1 inetd, 2 and 3 standalone servers
	diff    bool // -TT
	verbose int
	// modifiers
	recursive, dry, init, removals, straight, newForced bool
	groups, peers, node, cfgName                        string
	ignored                                             []string // flags that mean nothing here, with why
	files                                               []string
}

// csync2Usage is a command line csync2 itself answers with its help text
// and exit 1.
type csync2Usage struct{ msg string }

func (e *csync2Usage) Error() string { return e.msg }

// argFlags are the letters that take an argument (the ':' letters).
const argFlags = "WsPpGCDN"

// parseCsync2 parses args (without the program name) as csync2's getopt
// does: letters may be combined ("-rxv"), a letter's argument is the rest
// of its word or the next word, options and files may mix (GNU getopt
// permutes), and "--" ends the options.
func parseCsync2(args []string) (*csync2Opts, error) {
	o := &csync2Opts{}
	if len(args) == 2 && args[0] == "-k" {
		o.mode, o.files = 'k', args[1:]
		return o, nil
	}
	setMode := func(m byte) error {
		if o.mode != 0 {
			return &csync2Usage{fmt.Sprintf("only one mode letter at a time (-%c after -%c)", m, o.mode)}
		}
		o.mode = m
		return nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			o.files = append(o.files, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			o.files = append(o.files, a)
			continue
		}
		for j := 1; j < len(a); j++ {
			l := a[j]
			var val string
			if strings.IndexByte(argFlags, l) >= 0 {
				switch {
				case j+1 < len(a):
					val = a[j+1:]
				case i+1 < len(args):
					i++
					val = args[i]
				default:
					return nil, &csync2Usage{fmt.Sprintf("option -%c needs an argument", l)}
				}
				j = len(a)
			}
			var err error
			switch l {
			case 'G':
				o.groups = val
			case 'P':
				o.peers = val
			case 'N':
				o.node = val
			case 'C':
				o.cfgName = val
			case 'p':
				o.ignored = append(o.ignored, "-p "+val+": ocf-csync connects over SSH (the port is the config's ssh { port })")
			case 'D':
				o.ignored = append(o.ignored, "-D "+val+": the state database is badger, in /var/lib/ocf-csync/<config name>")
			case 'W', 's':
				o.ignored = append(o.ignored, fmt.Sprintf("-%c %s: not supported", l, val))
			case 'B', 'A':
				// SQLite tuning: ocf-csync's state database has its own locking.
			case 't', 'l':
				o.ignored = append(o.ignored, fmt.Sprintf("-%c: not supported", l))
			case 'F':
				o.newForced = true
			case 'I':
				o.init = true
			case 'X':
				o.removals = true
			case 'U':
				o.straight = true
			case 'v':
				o.verbose++
			case 'r':
				o.recursive = true
			case 'd':
				o.dry = true
			case 'u':
				if o.mode == 'c' {
					o.mode = 'C' // -cu: check, then update
				} else {
					err = setMode(l)
				}
			case 'i':
				if o.mode == 'i' {
					o.inetd++
				} else if err = setMode(l); err == nil {
					o.inetd = 1
				}
			case 'T':
				if o.mode == 'T' {
					o.diff = true
				} else {
					err = setMode(l)
				}
			case 'h', 'x', 'c', 'o', 'm', 'f', 'H', 'L', 'S', 'M', 'R':
				err = setMode(l)
			default:
				err = &csync2Usage{fmt.Sprintf("unknown option -%c", l)}
			}
			if err != nil {
				return nil, err
			}
		}
	}
	return o, o.check()
}

// check applies csync2's argument rules for the mode.
func (o *csync2Opts) check() error {
	switch o.mode {
	case 0:
		return &csync2Usage{"no mode given (-x, -c, -u, -m, -f, -T, ...)"}
	case 'x', 'c', 'C', 'u', 'h', 'm', 'f', 'o':
	case 'T':
		if len(o.files) > 3 {
			return &csync2Usage{"-T takes at most: myname peername file"}
		}
	case 'S':
		if len(o.files) != 2 {
			return &csync2Usage{"-S takes: myname peername"}
		}
	default:
		if len(o.files) > 0 {
			return &csync2Usage{fmt.Sprintf("-%c takes no file arguments", o.mode)}
		}
	}
	return nil
}

var cfgNameRE = regexp.MustCompile(`^[a-z0-9]+$`)

// csync2SystemDir is $CSYNC2_SYSTEM_DIR, else /etc (Debian's csync2).
func csync2SystemDir(env Env) string {
	if d := env.getenv("CSYNC2_SYSTEM_DIR"); d != "" {
		return d
	}
	return filepath.Join(sysRoot, "etc")
}

// configFile is csync2's config path: SYSDIR/csync2.cfg, or
// SYSDIR/csync2_NAME.cfg with -C NAME.
func (o *csync2Opts) configFile(env Env) (string, error) {
	dir := csync2SystemDir(env)
	if o.cfgName == "" {
		return filepath.Join(dir, "csync2.cfg"), nil
	}
	if !cfgNameRE.MatchString(o.cfgName) {
		return "", errors.New("Config names are limited to [a-z0-9]+.")
	}
	return filepath.Join(dir, "csync2_"+o.cfgName+".cfg"), nil
}

// csync2Run is one ocf-csync command line standing for the csync2 call,
// and how its exit code reads in csync2's terms.
type csync2Run struct {
	args []string // after "ocf-csync"
	// codes maps the ocf-csync exit code to csync2's; unlisted codes
	// mean failure (1), 0 means success (0).
	codes map[int]int
}

// translate turns the parsed call into ocf-csync command lines; a non-nil
// notice is printed instead of running anything (modes with nothing to do).
func (o *csync2Opts) translate(cfg string) (runs []csync2Run, notice string, err error) {
	global := []string{"--config", cfg}
	if o.node != "" {
		global = append(global, "--node", o.node)
	}
	// csync2 is silent unless -v: ocf-csync's summaries wait for -v too.
	if o.verbose == 0 {
		global = append(global, "-q")
	}
	for range min(o.verbose, 2) {
		global = append(global, "-v")
	}
	cmd := func(name string, flags ...string) csync2Run {
		a := append(append(append([]string{}, global...), name), flags...)
		return csync2Run{args: a}
	}
	var rec []string
	if o.recursive {
		rec = []string{"-r"}
	}
	files := func(r csync2Run) csync2Run {
		if len(o.files) > 0 {
			r.args = append(append(r.args, "--"), o.files...)
		}
		return r
	}
	push := func(name string) csync2Run {
		r := cmd(name, rec...)
		if o.dry {
			r.args = append(r.args, "--dry-run")
		}
		if o.peers != "" {
			r.args = append(r.args, "--peer", o.peers)
		}
		if o.groups != "" {
			r.args = append(r.args, "--group", o.groups)
		}
		return files(r)
	}
	check := func() csync2Run {
		r := cmd("check", rec...)
		if o.init {
			r.args = append(r.args, "--init")
		}
		if o.newForced {
			r.args = append(r.args, "--force")
		}
		return files(r)
	}
	needFiles := func() error {
		if len(o.files) == 0 {
			return &csync2Usage{fmt.Sprintf("-%c needs files", o.mode)}
		}
		return nil
	}
	switch o.mode {
	case 'x':
		return []csync2Run{push("sync")}, "", nil
	case 'c', 'h':
		// ocf-csync keeps no hint table: -h checks at once, and -c alone
		// checks everything, as "-cr /" does.
		return []csync2Run{check()}, "", nil
	case 'C':
		return []csync2Run{check(), push("update")}, "", nil
	case 'u':
		return []csync2Run{push("update")}, "", nil
	case 'm':
		if err := needFiles(); err != nil {
			return nil, "", err
		}
		return []csync2Run{files(cmd("mark", rec...))}, "", nil
	case 'f':
		if err := needFiles(); err != nil {
			return nil, "", err
		}
		return []csync2Run{files(cmd("force", rec...))}, "", nil
	case 'L':
		return []csync2Run{{args: append(append([]string{}, global...), "list", "files"), codes: map[int]int{2: 2}}}, "", nil
	case 'M':
		return []csync2Run{{args: append(append([]string{}, global...), "list", "dirty"), codes: map[int]int{2: 2}}}, "", nil
	case 'H':
		return nil, "", &csync2Exit{2, ""} // no hints, ever: empty list
	case 'R':
		if o.groups != "" {
			return nil, "", &csync2Exit{1, "Never run -R with -G!"}
		}
		return nil, "ocf-csync drops state entries outside the config by itself: nothing to remove", nil
	case 'k':
		return []csync2Run{{args: []string{"keygen", o.files[0]}}}, "", nil
	case 'i':
		if o.inetd > 1 {
			return nil, "", &csync2Exit{1, "ocf-csync has no TCP server (-ii, -iii): peers run 'ocf-csync serve' over SSH (see the authorized_keys line in the README)"}
		}
		return []csync2Run{cmd("serve")}, "", nil
	case 'T':
		return o.translateT(global)
	}
	return nil, "", &csync2Exit{1, fmt.Sprintf("csync2 -%c is not supported by ocf-csync (see README, Coming from csync2)", o.mode)}
}

// translateT maps -T [myname peer] [file] (compare), -TT (diff) and -TI
// (mark the differences). csync2 -T exits 2 when in sync, 0 with
// differences and 1 on errors; ocf-csync's compare and diff exit 0, 1, 2.
func (o *csync2Opts) translateT(global []string) ([]csync2Run, string, error) {
	var myname, peer, file string
	switch len(o.files) {
	case 1:
		file = o.files[0]
	case 2:
		myname, peer = o.files[0], o.files[1]
	case 3:
		myname, peer, file = o.files[0], o.files[1], o.files[2]
	}
	g := append([]string{}, global...)
	if myname != "" && o.node == "" {
		g = append(g, "--node", myname)
	}
	codes := map[int]int{0: 2, 1: 0}
	if o.diff {
		if file == "" {
			return nil, "", &csync2Exit{1, "csync2 -TT needs a file here: list the differences with 'csync2 -T', then 'csync2 -TT FILE'"}
		}
		a := append(g, "diff")
		if peer != "" {
			a = append(a, "--peer", peer)
		}
		return []csync2Run{{args: append(a, "--", file), codes: codes}}, "", nil
	}
	a := append(g, "compare")
	if o.init {
		// -TI marks the differences dirty (-X: also what only the peer
		// has, so the next push deletes it there); ocf-csync marks them for
		// the compared peer only, as -TIU does.
		a = append(a, "--mark")
		if o.removals {
			a = append(a, "--delete")
		}
		codes = nil
	}
	a = append(a, "--")
	if peer != "" {
		a = append(a, peer)
	}
	if file != "" {
		a = append(a, file)
	}
	return []csync2Run{{args: a, codes: codes}}, "", nil
}

// csync2Exit ends a csync2 call with a code and a message (on stderr).
type csync2Exit struct {
	code int
	msg  string
}

func (e *csync2Exit) Error() string { return e.msg }

// csync2LockFile is csync2's maintenance switch: while SYSDIR/csync2.lock
// exists, every csync2 call prints "Found PATH" and exits 1.
func csync2LockFile(env Env) (string, bool) {
	p := filepath.Join(csync2SystemDir(env), "csync2.lock")
	_, err := os.Stat(p)
	return p, err == nil
}
