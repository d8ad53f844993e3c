package config

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxFileSize bounds what "config" may pull in; a config is a few KiB.
const maxFileSize = 4 << 20

// maxErrors stops error collection before cascades drown the first cause.
const maxErrors = 20

// Load reads the config file at path and every file it includes.
func Load(path string) (*Config, error) {
	src, err := readConfigFile(path)
	if err != nil {
		return nil, &Error{Msg: "cannot read config file", Err: err}
	}
	return Parse(path, src)
}

// Parse parses src as the contents of filename. "config" includes are read
// from disk, relative to the directory of the including file.
func Parse(filename string, src []byte) (*Config, error) {
	p := &parser{cfg: newConfig(), seen: map[string]Pos{}}
	p.cfg.Files = append(p.cfg.Files, filename)
	p.push(filename, src)
	p.advance()
	p.top()
	p.checkSafetyGroups()
	p.checkSFTPHosts()
	if err := p.errs.err(); err != nil {
		return nil, err
	}
	return p.cfg, nil
}

// readConfigFile refuses devices and FIFOs (reading /dev/zero or opening a
// FIFO would never end) and oversized files.
func readConfigFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(src) > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxFileSize)
	}
	return src, nil
}

type parser struct {
	cfg     *Config
	stack   []*lexer // the file being read and the files including it
	opened  []string // absolute paths of stack, for include loop detection
	tok     token
	pending *token // one token pushed back by unread
	errs    ErrorList
	stop    bool // a lexical error or too many errors ended parsing
	unnamed int
	seen    map[string]Pos // ssh/ha settings already given
}

func (p *parser) push(file string, src []byte) {
	p.stack = append(p.stack, newLexer(file, src))
	abs, err := filepath.Abs(file)
	if err != nil {
		abs = filepath.Clean(file)
	}
	p.opened = append(p.opened, abs)
}

// advance reads the next token; at the end of an included file it continues
// with the including file, which makes "config" a textual include.
func (p *parser) advance() {
	if p.pending != nil {
		p.tok, p.pending = *p.pending, nil
		return
	}
	for {
		if p.stop {
			p.tok = token{kind: tEOF, pos: p.tok.pos}
			return
		}
		t, err := p.stack[len(p.stack)-1].next()
		if err != nil {
			p.errs = append(p.errs, err)
			p.stop = true
			continue
		}
		if t.kind == tEOF && len(p.stack) > 1 {
			p.stack = p.stack[:len(p.stack)-1]
			p.opened = p.opened[:len(p.opened)-1]
			continue
		}
		p.tok = t
		return
	}
}

func (p *parser) errorf(pos Pos, format string, args ...any) {
	if p.stop {
		return
	}
	p.errs = append(p.errs, &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)})
	if len(p.errs) >= maxErrors {
		p.stop = true
	}
}

func (p *parser) warnf(pos Pos, format string, args ...any) {
	p.cfg.Warnings = append(p.cfg.Warnings, Warning{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

// expected reports that the current token is not what the grammar wants.
func (p *parser) expected(what string) {
	hint := ""
	if t := p.tok; t.kind == tWord && len(t.text) > 1 && strings.ContainsAny(t.text, "{}") {
		hint = " (braces must be separated from words by a space)"
	}
	p.errorf(p.tok.pos, "expected %s, found %s%s", what, p.tok.describe(), hint)
}

// sync skips to the end of the current statement: past the next ';' or past a
// whole { } block, or up to a '}' closing the enclosing block.
func (p *parser) sync() {
	depth := 0
	for {
		switch p.tok.kind {
		case tEOF:
			return
		case tLBrace:
			depth++
		case tWord: // "action{" opens a block too
			if len(p.tok.text) > 1 && strings.HasSuffix(p.tok.text, "{") {
				depth++
			}
		case tRBrace:
			if depth == 0 {
				return
			}
			if depth--; depth == 0 {
				p.advance()
				return
			}
		case tSemi:
			if depth == 0 {
				p.advance()
				return
			}
		}
		p.advance()
	}
}

// recover skips the rest of a broken statement, unless the parser already
// stands on a csync2 keyword: then a ';' was most likely forgotten and the
// keyword starts the next statement.
func (p *parser) recover() {
	if p.tok.kind == tWord && reserved[p.tok.text] {
		return
	}
	p.sync()
}

// value consumes one word or quoted string. Bare csync2 keywords are refused
// unless anyWord is set (inside the ssh and ha blocks).
func (p *parser) value(what string, anyWord bool) (token, bool) {
	t := p.tok
	if t.isValue() || (anyWord && t.kind == tWord) {
		p.advance()
		return t, true
	}
	p.expected(what)
	p.recover()
	return t, false
}

// words consumes a possibly empty list of values.
func (p *parser) words() []token {
	var ts []token
	for p.tok.isValue() {
		ts = append(ts, p.tok)
		p.advance()
	}
	return ts
}

// semi consumes the ';' ending a statement.
func (p *parser) semi(stmt string) bool {
	if p.tok.kind == tSemi {
		p.advance()
		return true
	}
	p.expected("';' after " + stmt)
	p.recover()
	return false
}

// open consumes the '{' opening a block.
func (p *parser) open(block string) bool {
	if p.tok.kind == tLBrace {
		p.advance()
		return true
	}
	p.expected("'{' after " + block)
	p.sync()
	return false
}

// blockEnd handles the tokens every block loop shares. It returns done when
// the block is over (closed, or cut off by the end of the input) and handled
// when it consumed something.
func (p *parser) blockEnd(block string, open Pos) (done, handled bool) {
	switch {
	case p.tok.kind == tRBrace:
		p.advance()
		return true, true
	case p.tok.kind == tEOF:
		p.errorf(p.tok.pos, "expected '}' to close %s opened at %s, found end of file", block, open)
		return true, true
	case p.tok.kind == tSemi: // empty statement
		p.advance()
		return false, true
	case p.tok.is("config"):
		p.include()
		return false, true
	}
	return false, false
}

// include handles "config FILE [;]": the file's tokens are read next.
func (p *parser) include() {
	p.advance()
	t := p.tok
	if t.kind != tWord && t.kind != tString {
		p.expected("a file name after config")
		p.sync()
		return
	}
	name := t.text
	if !filepath.IsAbs(name) {
		// Deliberate fix: csync2 resolves this against the working directory.
		name = filepath.Join(filepath.Dir(t.pos.File), name)
	}
	abs, err := filepath.Abs(name)
	if err != nil {
		abs = filepath.Clean(name)
	}
	if i := slices.Index(p.opened, abs); i >= 0 {
		chain := make([]string, 0, len(p.stack)+1)
		for _, l := range p.stack[i:] {
			chain = append(chain, l.file)
		}
		chain = append(chain, name)
		p.errorf(t.pos, "expected a config file not already being read, found include loop %s", strings.Join(chain, " -> "))
		p.advance()
		return
	}
	if len(p.stack)-1 >= MaxIncludeDepth {
		p.errorf(t.pos, "expected at most %d nested config includes, found %d (%s)", MaxIncludeDepth, len(p.stack), name)
		p.advance()
		return
	}
	src, err := readConfigFile(name)
	if err != nil {
		if !p.stop {
			p.errs = append(p.errs, &Error{Pos: t.pos, Msg: "cannot read included config file", Err: err})
		}
		p.advance()
		return
	}
	p.cfg.Files = append(p.cfg.Files, name)
	p.push(name, src)
	p.advance()
}

const topLevelWords = "group, prefix, nossl, database, tempdir, lock-timeout, ignore, config, ssh, ha or safety"

func (p *parser) top() {
	for p.tok.kind != tEOF {
		t := p.tok
		switch {
		case t.kind == tSemi:
			p.advance()
		case t.is("config"):
			p.include()
		case t.is("group"):
			p.group()
		case t.is("prefix"):
			p.prefix()
		case t.is("nossl"):
			p.advance()
			from, ok := p.value("a host pattern after nossl", false)
			if !ok {
				continue
			}
			to, ok := p.value("a peer pattern after nossl "+from.text, false)
			if ok && p.semi("nossl") {
				p.cfg.Nossl = append(p.cfg.Nossl, NosslRule{From: from.text, To: to.text, Pos: t.pos})
				p.warnf(t.pos, "nossl has no effect: ocf-csync always connects over SSH")
			}
		case t.is("database"), t.is("tempdir"):
			p.advance()
			v, ok := p.value("a path after "+t.text, false)
			if ok && p.semi(t.text) {
				if t.text == "database" {
					p.cfg.Database = v.text
					p.warnf(t.pos, "database is not used: ocf-csync keeps its state in its own store")
				} else {
					p.cfg.Tempdir = v.text
					p.warnf(t.pos, "tempdir is kept for csync2 compatibility but not used by ocf-csync")
				}
			}
		case t.is("lock-timeout"):
			p.advance()
			v, ok := p.value("a number of seconds after lock-timeout", false)
			if !ok {
				continue
			}
			n, err := strconv.Atoi(v.text)
			if err != nil || n < 0 || n > maxSeconds {
				p.errorf(v.pos, "expected a number of seconds after lock-timeout, found %s", v.describe())
			} else {
				p.cfg.LockTimeout = time.Duration(n) * time.Second
			}
			p.semi("lock-timeout")
		case t.is("ignore"):
			p.advance()
			for _, w := range p.words() {
				switch w.text {
				case "uid":
					p.cfg.Ignore.UID = true
				case "gid":
					p.cfg.Ignore.GID = true
				case "mod":
					p.cfg.Ignore.Mode = true
				default:
					p.errorf(w.pos, "expected uid, gid or mod after ignore, found %s", w.describe())
				}
			}
			p.semi("ignore")
		case t.is("no-cygwin-lowercase"):
			p.errorf(t.pos, "expected one of %s, found keyword \"no-cygwin-lowercase\" (it only means something to csync2 on cygwin; remove it)", topLevelWords)
			p.advance()
			if p.tok.kind == tSemi {
				p.advance()
			}
		case t.is("ssh"):
			p.settings("ssh", sshSettings, p.setSSH)
		case t.is("ha"):
			p.settings("ha", haSettings, p.setHA)
		case t.is("safety"):
			p.safety()
		default:
			p.expected("one of " + topLevelWords)
			if t.kind == tRBrace {
				p.advance()
			} else {
				p.sync()
			}
		}
	}
}

func (p *parser) group() {
	kw := p.tok
	p.advance()
	g := &Group{Pos: kw.pos, Auto: DefaultAuto, BackupGenerations: DefaultBackupGenerations}
	if t := p.tok; t.isValue() {
		g.Name = t.text
		p.advance()
		// "group g1{" lexes as one word, as in csync2; report it and go on.
		if t.kind == tWord && strings.HasSuffix(t.text, "{") && len(t.text) > 1 {
			g.Name = strings.TrimSuffix(t.text, "{")
			p.errorf(t.pos, "expected '{' after group name, found %s (put a space before '{')", t.describe())
			next := p.tok
			p.pending = &next
			p.tok = token{kind: tLBrace, text: "{", pos: t.pos}
		}
	} else {
		p.unnamed++
		g.Name = fmt.Sprintf("group_%d", p.unnamed)
	}
	what := fmt.Sprintf("group %q", g.Name)
	if !p.open(what) {
		return
	}
	var keyPos, autoPos *Pos
	for {
		done, handled := p.blockEnd(what, kw.pos)
		if done {
			break
		}
		if handled {
			continue
		}
		t := p.tok
		switch {
		case t.is("host"):
			p.hosts(g)
		case t.is("include"), t.is("exclude"), t.is("compare"):
			p.advance()
			for _, w := range p.words() {
				pt := Pattern{Include: t.text != "exclude", Compare: t.text == "compare", Text: stripSlashes(w.text), Pos: w.pos}
				g.Patterns = append(g.Patterns, pt)
				if pt.Compare {
					g.Compare = append(g.Compare, pt.Text)
				}
			}
			p.semi(t.text)
		case t.is("key"):
			p.advance()
			v, ok := p.value("a key file after key", false)
			if !ok {
				continue
			}
			if keyPos != nil {
				p.errorf(t.pos, "expected one key per group, found a second key in %s (the first is at %s)", what, *keyPos)
			} else {
				keyPos = &t.pos
				g.Key = resolveKey(v.text, v.pos.File)
				g.KeyPos = v.pos
			}
			p.semi("key")
		case t.is("auto"):
			p.advance()
			v, ok := p.value("a method after auto", false)
			if !ok {
				continue
			}
			switch {
			case autoPos != nil:
				p.errorf(t.pos, "expected one auto per group, found a second auto in %s (the first is at %s)", what, *autoPos)
			case !slices.Contains(AutoMethods, v.text):
				p.errorf(v.pos, "expected one of %s after auto, found %s", strings.Join(AutoMethods, ", "), v.describe())
			default:
				autoPos = &t.pos
				g.Auto = v.text
			}
			p.semi("auto")
		case t.is("backup-directory"):
			p.advance()
			if v, ok := p.value("a directory after backup-directory", false); ok {
				g.BackupDir, g.BackupDirPos = v.text, v.pos
				p.semi("backup-directory")
			}
		case t.is("backup-generations"):
			p.advance()
			v, ok := p.value("a number after backup-generations", false)
			if !ok {
				continue
			}
			if n, err := strconv.Atoi(v.text); err != nil || n < 0 {
				p.errorf(v.pos, "expected a number (0 or more) after backup-generations, found %s", v.describe())
			} else {
				g.BackupGenerations = n
			}
			p.semi("backup-generations")
		case t.is("action"):
			p.action(g)
		default:
			p.expected("a group statement (host, key, include, exclude, compare, auto, backup-directory, backup-generations or action) or '}'")
			p.sync()
		}
	}
	if keyPos == nil {
		p.errorf(kw.pos, "expected a key statement in %s, found none (every group needs a key)", what)
	}
	p.cfg.Groups = append(p.cfg.Groups, g)
}

// resolveKey: csync2 reads relative key paths from CSYNC2_SYSTEM_DIR; without
// it, the directory of the config file is the sensible base.
func resolveKey(key, file string) string {
	if filepath.IsAbs(key) {
		return key
	}
	if dir := os.Getenv("CSYNC2_SYSTEM_DIR"); dir != "" {
		return filepath.Join(dir, key)
	}
	return filepath.Join(filepath.Dir(file), key)
}

// stripSlashes removes trailing '/' but keeps a lone "/", like csync2.
func stripSlashes(s string) string {
	for len(s) > 1 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}

func (p *parser) hosts(g *Group) {
	p.advance()
	slave := false
	for {
		t := p.tok
		switch {
		case t.isValue():
			p.advance()
			h := Host{Name: strings.ToLower(t.text), Slave: slave, Pos: t.pos}
			h.Addr = h.Name
			if p.tok.kind == tAt {
				p.advance()
				a, ok := p.value("an address after '@'", false)
				if !ok {
					return
				}
				h.Addr = strings.ToLower(a.text)
			}
			for _, o := range g.Hosts {
				if o.Name == h.Name {
					p.warnf(t.pos, "host %q is listed twice in group %q; the entry at %s counts", h.Name, g.Name, o.Pos)
				}
			}
			g.Hosts = append(g.Hosts, h)
		case t.kind == tLParen && !slave:
			slave = true
			p.advance()
		case t.kind == tRParen && slave:
			slave = false
			p.advance()
		case t.kind == tSemi && !slave:
			p.advance()
			return
		default:
			if slave {
				p.expected("a host name or ')'")
			} else {
				p.expected("a host name, '(' or ';'")
			}
			p.recover()
			return
		}
	}
}

func (p *parser) action(g *Group) {
	kw := p.tok
	p.advance()
	if !p.open("action") {
		return
	}
	a := Action{Logfile: DefaultLogfile, Pos: kw.pos}
	for {
		done, handled := p.blockEnd("action", kw.pos)
		if done {
			break
		}
		if handled {
			continue
		}
		t := p.tok
		switch {
		case t.is("pattern"):
			p.advance()
			for _, w := range p.words() {
				if !isPathPattern(w.text) && !strings.Contains(w.text, "**") {
					p.warnf(w.pos, "action pattern %q does not start with '/' or '%%prefix%%'; action patterns match the full path, so it never matches", w.text)
				}
				a.Patterns = append(a.Patterns, w.text)
			}
			p.semi("pattern")
		case t.is("exec"):
			p.advance()
			for _, w := range p.words() {
				a.Exec = append(a.Exec, w.text)
				a.ExecPos = append(a.ExecPos, w.pos)
			}
			p.semi("exec")
		case t.is("logfile"):
			p.advance()
			if v, ok := p.value("a file after logfile", false); ok {
				a.Logfile = v.text
				p.semi("logfile")
			}
		case t.is("do-local"):
			p.advance()
			a.DoLocal = true
			p.semi("do-local")
		case t.is("do-local-only"):
			p.advance()
			a.DoLocal, a.DoLocalOnly = true, true
			p.semi("do-local-only")
		default:
			p.expected("an action statement (pattern, exec, logfile, do-local or do-local-only) or '}'")
			p.sync()
		}
	}
	g.Actions = append(g.Actions, a)
}

func (p *parser) prefix() {
	kw := p.tok
	p.advance()
	name, ok := p.value("a prefix name after prefix", false)
	if !ok {
		return
	}
	what := fmt.Sprintf("prefix %q", name.text)
	if !p.open(what) {
		return
	}
	pr := p.cfg.Prefix(name.text)
	if pr != nil {
		p.warnf(kw.pos, "prefix %q is also defined at %s; the \"on\" lines of both blocks are tried in file order", name.text, pr.Pos)
	} else {
		pr = &Prefix{Name: name.text, Pos: kw.pos}
		p.cfg.Prefixes = append(p.cfg.Prefixes, pr)
	}
	for {
		done, handled := p.blockEnd(what, kw.pos)
		if done {
			return
		}
		if handled {
			continue
		}
		if !p.tok.is("on") {
			p.expected("'on' or '}' in " + what)
			p.sync()
			continue
		}
		p.advance()
		pat, ok := p.value("a host pattern after on", false)
		if !ok {
			continue
		}
		if p.tok.kind != tColon {
			p.expected("':' after host pattern " + strconv.Quote(pat.text))
			p.sync()
			continue
		}
		p.advance()
		path, ok := p.value("a path after ':'", false)
		if !ok {
			continue
		}
		if !strings.HasPrefix(path.text, "/") {
			p.errorf(path.pos, "expected an absolute path for %s, found %s", what, path.describe())
		} else {
			if strings.ToLower(pat.text) != pat.text {
				p.warnf(pat.pos, "host pattern %q has upper-case letters but node names are lower-cased, so it never matches", pat.text)
			}
			pr.Entries = append(pr.Entries, PrefixEntry{HostPattern: pat.text, Path: stripSlashes(path.text), Pos: pat.pos})
		}
		p.semi("on " + pat.text)
	}
}

// maxSeconds keeps durations far from overflowing time.Duration.
const maxSeconds = 1 << 30

var (
	sshSettings    = []string{"user", "port", "identity", "known-hosts", "accept-new", "remote-command", "connect-timeout", "keepalive", "sftp-hosts"}
	haSettings     = []string{"cluster-ip", "ip-resource", "failover-policy", "stranded", "notify", "rescan-interval", "watch"}
	safetySettings = []string{"max-delete", "max-delete-count", "devices"}
)

// settings parses an ocf-csync block of "name value;" lines.
func (p *parser) settings(block string, names []string, set func(name string, v token) string) {
	kw := p.tok
	p.advance()
	p.settingsBody(block, kw, names, set)
}

// settingsBody parses the "{ name value; ... }" of a block opened by kw.
func (p *parser) settingsBody(block string, kw token, names []string, set func(name string, v token) string) {
	if !p.open(block) {
		return
	}
	for {
		done, handled := p.blockEnd(block+" block", kw.pos)
		if done {
			return
		}
		if handled {
			continue
		}
		t := p.tok
		if t.kind != tWord || !slices.Contains(names, t.text) {
			p.expected(fmt.Sprintf("a setting of the %s block (%s) or '}'", block, strings.Join(names, ", ")))
			p.sync()
			continue
		}
		p.advance()
		if block == "ssh" && t.text == "sftp-hosts" {
			p.sftpHosts(t)
			continue
		}
		v, ok := p.value("a value for "+t.text, true)
		if !ok {
			continue
		}
		if first, dup := p.seen[block+" "+t.text]; dup {
			p.errorf(t.pos, "expected one %s setting in %s, found a second (the first is at %s)", t.text, block, first)
		} else if want := set(t.text, v); want != "" {
			p.errorf(v.pos, "expected %s for %s %s, found %s", want, block, t.text, v.describe())
		} else {
			p.seen[block+" "+t.text] = t.pos
		}
		p.semi(block + " " + t.text)
	}
}

// safety parses "safety { }" (every group) or "safety GROUP { }" (one group;
// the group may be defined later in the file, checkSafetyGroups checks it).
func (p *parser) safety() {
	kw := p.tok
	p.advance()
	if p.tok.kind == tLBrace {
		p.settingsBody("safety", kw, safetySettings, func(name string, v token) string {
			return setSafety(&p.cfg.Safety, name, v)
		})
		return
	}
	name := p.tok
	if !name.isValue() {
		p.expected("'{' or a group name after safety")
		p.sync()
		return
	}
	p.advance()
	if name.kind == tWord && strings.HasSuffix(name.text, "{") && len(name.text) > 1 {
		// "safety g{" lexes as one word; report it and read the block.
		p.errorf(name.pos, "expected '{' after safety group name, found %s (put a space before '{')", name.describe())
		name.text = strings.TrimSuffix(name.text, "{")
		next := p.tok
		p.pending = &next
		p.tok = token{kind: tLBrace, text: "{", pos: name.pos}
	}
	if p.cfg.GroupSafety == nil {
		p.cfg.GroupSafety = map[string]*SafetyOverride{}
	}
	o := p.cfg.GroupSafety[name.text]
	if o == nil {
		o = &SafetyOverride{Group: name.text, Pos: name.pos}
		p.cfg.GroupSafety[name.text] = o
	}
	p.settingsBody("safety "+name.text, kw, safetySettings, func(setting string, v token) string {
		var s Safety
		if want := setSafety(&s, setting, v); want != "" {
			return want
		}
		switch setting {
		case "max-delete":
			o.MaxDeletePercent = &s.MaxDeletePercent
		case "max-delete-count":
			o.MaxDeleteCount = &s.MaxDeleteCount
		case "devices":
			o.RefuseDevices = &s.RefuseDevices
		}
		return ""
	})
}

// setSafety stores one safety setting into s.
func setSafety(s *Safety, name string, v token) string {
	switch name {
	case "max-delete":
		n, err := strconv.Atoi(strings.TrimSuffix(v.text, "%"))
		if err != nil || n < 0 || n > 100 {
			return "a percentage (0-100, 0 = off)"
		}
		s.MaxDeletePercent = n
	case "max-delete-count":
		n, err := strconv.Atoi(v.text)
		if err != nil || n < 0 {
			return "a number of files (0 or more, 0 = off)"
		}
		s.MaxDeleteCount = n
	case "devices":
		if !slices.Contains(DevicesPolicies, v.text) {
			return "one of " + strings.Join(DevicesPolicies, ", ")
		}
		s.RefuseDevices = v.text == "refuse"
	}
	return ""
}

// checkSafetyGroups reports "safety GROUP" blocks naming no group.
func (p *parser) checkSafetyGroups() {
	names := make([]string, 0, len(p.cfg.GroupSafety))
	for n := range p.cfg.GroupSafety {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		pa, pb := p.cfg.GroupSafety[a].Pos, p.cfg.GroupSafety[b].Pos
		if pa.File != pb.File {
			return strings.Compare(pa.File, pb.File)
		}
		if pa.Line != pb.Line {
			return pa.Line - pb.Line
		}
		return pa.Col - pb.Col
	})
	for _, n := range names {
		if p.cfg.Group(n) == nil {
			known := make([]string, len(p.cfg.Groups))
			for i, g := range p.cfg.Groups {
				known[i] = g.Name
			}
			p.errorf(p.cfg.GroupSafety[n].Pos, "expected a group name after safety (%s), found unknown group %q", orNone(known), n)
		}
	}
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none defined"
	}
	return strings.Join(names, ", ")
}

// sftpHosts parses "sftp-hosts NAME...;" (kw already consumed). Whether
// each name is a slave is checked once every group is read (checkSFTPHosts).
func (p *parser) sftpHosts(kw token) {
	ws := p.words()
	if len(ws) == 0 {
		p.expected("one or more host names after sftp-hosts")
		p.recover()
		return
	}
	if first, dup := p.seen["ssh sftp-hosts"]; dup {
		p.errorf(kw.pos, "expected one sftp-hosts setting in ssh, found a second (the first is at %s); list every SFTP host in one line", first)
	} else {
		p.seen["ssh sftp-hosts"] = kw.pos
		p.cfg.SSH.SFTPPos = kw.pos
		for _, w := range ws {
			name := strings.ToLower(w.text)
			if !slices.Contains(p.cfg.SSH.SFTPHosts, name) {
				p.cfg.SSH.SFTPHosts = append(p.cfg.SSH.SFTPHosts, name)
			}
		}
	}
	p.semi("ssh sftp-hosts")
}

// checkSFTPHosts: an SFTP host runs no ocf-csync, so it can only receive.
// It must be a slave "( )" in every group that lists it, and in one at
// least; actions never run there.
func (p *parser) checkSFTPHosts() {
	for _, name := range p.cfg.SSH.SFTPHosts {
		found := false
		for _, g := range p.cfg.Groups {
			for _, h := range g.Hosts {
				if h.Name != name {
					continue
				}
				found = true
				if !h.Slave {
					p.errorf(h.Pos, "expected host %s to be a slave in group %q (write it in parentheses: (%s)): it is in ssh sftp-hosts, and an SFTP host runs no ocf-csync, so it can only receive", name, g.Name, name)
				}
				if len(g.Actions) > 0 {
					p.warnf(h.Pos, "group %q has actions; they never run on SFTP host %s (nothing runs there but sshd)", g.Name, name)
				}
			}
		}
		if !found {
			p.errorf(p.cfg.SSH.SFTPPos, "expected the hosts of ssh sftp-hosts to be hosts of a group, found %s, which no group lists", name)
		}
	}
}

// setSSH stores one ssh setting; it returns what was expected if v is bad.
func (p *parser) setSSH(name string, v token) string {
	s := &p.cfg.SSH
	switch name {
	case "user":
		if v.text == "" {
			return "a user name"
		}
		s.User = v.text
	case "port":
		n, err := strconv.Atoi(v.text)
		if err != nil || n < 1 || n > 65535 {
			return "a port number (1-65535)"
		}
		s.Port = n
	case "identity", "known-hosts":
		if v.text == "" {
			return "a file name"
		}
		path := v.text
		if !filepath.IsAbs(path) {
			path = filepath.Join(filepath.Dir(v.pos.File), path)
		}
		if name == "identity" {
			s.Identity = path
		} else {
			s.KnownHosts = path
		}
	case "accept-new":
		b, ok := parseBool(v.text)
		if !ok {
			return "yes or no"
		}
		s.AcceptNew = b
	case "remote-command":
		if strings.TrimSpace(v.text) == "" {
			return "a command"
		}
		s.RemoteCommand = v.text
	case "connect-timeout", "keepalive":
		d, ok := parseSeconds(v.text)
		if !ok {
			return "a positive number of seconds"
		}
		if name == "keepalive" {
			s.Keepalive = d
		} else {
			s.ConnectTimeout = d
		}
	}
	return ""
}

func (p *parser) setHA(name string, v token) string {
	h := &p.cfg.HA
	switch name {
	case "cluster-ip":
		a, err := netip.ParseAddr(v.text)
		if err != nil || a.Zone() != "" {
			return "an IP address"
		}
		h.ClusterIP = a.String()
	case "ip-resource":
		if v.text == "" {
			return "a resource name"
		}
		h.IPResource = v.text
	case "failover-policy":
		if !slices.Contains(FailoverPolicies, v.text) {
			return "one of " + strings.Join(FailoverPolicies, ", ")
		}
		h.FailoverPolicy = v.text
	case "stranded":
		if !slices.Contains(StrandedPolicies, v.text) {
			return "one of " + strings.Join(StrandedPolicies, ", ")
		}
		h.Stranded = Stranded(v.text)
	case "notify":
		h.Notify = v.text
	case "rescan-interval":
		d, ok := parseSeconds(v.text)
		if !ok {
			return "a positive number of seconds"
		}
		h.RescanInterval = d
	case "watch":
		b, ok := parseBool(v.text)
		if !ok {
			return "yes or no"
		}
		h.Watch = b
	}
	return ""
}

func parseBool(s string) (bool, bool) {
	switch s {
	case "yes", "true", "on", "1":
		return true, true
	case "no", "false", "off", "0":
		return false, true
	}
	return false, false
}

func parseSeconds(s string) (time.Duration, bool) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxSeconds {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}
