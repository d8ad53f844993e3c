package config

import "strings"

// FnmFlags select fnmatch(3) behaviour. csync2 relies on glibc's fnmatch, whose
// rules differ from path.Match (leading-dir matching, '^' negation, unclosed
// '[' as a literal), so the matcher is written out here.
type FnmFlags int

const (
	// FnmPathname: '*', '?' and bracket expressions never match '/'.
	FnmPathname FnmFlags = 1 << iota
	// FnmLeadingDir: the pattern also matches when it matches a leading part
	// of name that is followed by '/', so "/etc" covers "/etc/hosts".
	FnmLeadingDir
)

// FnMatch reports whether name matches the shell pattern, as glibc's
// fnmatch(pattern, name, flags) == 0 would (no FNM_PERIOD, escapes enabled).
func FnMatch(pattern, name string, flags FnmFlags) bool {
	pathname := flags&FnmPathname != 0
	if fnmatch(pattern, name, pathname) {
		return true
	}
	if flags&FnmLeadingDir != 0 {
		for i := 0; i < len(name); i++ {
			if name[i] == '/' && fnmatch(pattern, name[:i], pathname) {
				return true
			}
		}
	}
	return false
}

// fnmatch matches the whole of s. It backtracks only to the most recent '*',
// which is enough for glob patterns and keeps the cost linear-ish: a '*' that
// may not cross '/' cannot be rescued by an earlier '*' either.
func fnmatch(p, s string, pathname bool) bool {
	px, sx := 0, 0
	starPx, starSx := -1, -1
	for px < len(p) || sx < len(s) {
		if px < len(p) {
			switch c := p[px]; c {
			case '*':
				for px < len(p) && p[px] == '*' {
					px++
				}
				starPx, starSx = px, sx
				continue
			case '?':
				if sx < len(s) && !(pathname && s[sx] == '/') {
					px++
					sx++
					continue
				}
			case '[':
				if sx < len(s) {
					matched, width, state := matchBracket(p[px:], s[sx], pathname)
					if state == bracketBroken {
						return false
					}
					if state == bracketOK && matched {
						px += width
						sx++
						continue
					}
					if state == bracketUnclosed && s[sx] == '[' { // an unclosed '[' is a literal
						px++
						sx++
						continue
					}
				}
			case '\\':
				if px+1 >= len(p) {
					return false // a trailing backslash never matches (glibc)
				}
				if sx < len(s) && s[sx] == p[px+1] {
					px += 2
					sx++
					continue
				}
			default:
				if sx < len(s) && s[sx] == c {
					px++
					sx++
					continue
				}
			}
		}
		// Mismatch: let the last '*' swallow one more byte, if it may.
		if starPx >= 0 && starSx < len(s) && !(pathname && s[starSx] == '/') {
			starSx++
			px, sx = starPx, starSx
			continue
		}
		return false
	}
	return true
}

// Bracket parse results.
const (
	bracketOK       = iota
	bracketUnclosed // no closing ']': the '[' is a literal
	bracketBroken   // unknown [:class:] or bad [.x.]: glibc fails the whole match
)

// matchBracket evaluates the bracket expression at the start of p against c;
// width is its length.
func matchBracket(p string, c byte, pathname bool) (matched bool, width, state int) {
	i := 1
	negate := false
	if i < len(p) && (p[i] == '!' || p[i] == '^') {
		negate = true
		i++
	}
	first := true
	for {
		if i >= len(p) {
			return false, 0, bracketUnclosed
		}
		ch := p[i]
		if ch == ']' && !first {
			i++
			break
		}
		first = false
		if ch == '[' && i+1 < len(p) && p[i+1] == ':' {
			if end := strings.Index(p[i+2:], ":]"); end >= 0 {
				class, ok := charClasses[p[i+2:i+2+end]]
				if !ok && !matched { // glibc stops checking once a member matched
					return false, 0, bracketBroken
				}
				if ok && class(c) {
					matched = true
				}
				i += 2 + end + 2
				continue
			}
		}
		lo, n := bracketChar(p, i)
		if n < 0 {
			return false, 0, bracketBroken
		}
		if n == 0 {
			return false, 0, bracketUnclosed
		}
		i += n
		hi := lo
		if i+1 < len(p) && p[i] == '-' && p[i+1] != ']' {
			h, n := bracketChar(p, i+1)
			if n < 0 {
				return false, 0, bracketBroken
			}
			if n == 0 {
				return false, 0, bracketUnclosed
			}
			hi = h
			i += 1 + n
		}
		if lo <= c && c <= hi {
			matched = true
		}
	}
	if pathname && c == '/' {
		return false, i, bracketOK
	}
	return matched != negate, i, bracketOK
}

// bracketChar reads one element at p[i]: a byte, an escaped byte, or a
// single-character collating symbol [.x.] / equivalence class [=x=]. n is 0
// at the end of p and -1 for a collating element glibc rejects.
func bracketChar(p string, i int) (c byte, n int) {
	switch {
	case p[i] == '\\':
		if i+1 >= len(p) {
			return 0, 0
		}
		return p[i+1], 2
	case p[i] == '[' && i+1 < len(p) && (p[i+1] == '.' || p[i+1] == '='):
		d := p[i+1]
		if i+4 < len(p) && p[i+3] == d && p[i+4] == ']' {
			return p[i+2], 5
		}
		return 0, -1
	}
	return p[i], 1
}

var charClasses = map[string]func(byte) bool{
	"alnum":  func(c byte) bool { return isAlpha(c) || isDigit(c) },
	"alpha":  isAlpha,
	"blank":  func(c byte) bool { return c == ' ' || c == '\t' },
	"cntrl":  func(c byte) bool { return c < 0x20 || c == 0x7f },
	"digit":  isDigit,
	"graph":  func(c byte) bool { return c > 0x20 && c < 0x7f },
	"lower":  func(c byte) bool { return c >= 'a' && c <= 'z' },
	"print":  func(c byte) bool { return c >= 0x20 && c < 0x7f },
	"punct":  func(c byte) bool { return c > 0x20 && c < 0x7f && !isAlpha(c) && !isDigit(c) },
	"space":  func(c byte) bool { return c == ' ' || (c >= '\t' && c <= '\r') },
	"upper":  func(c byte) bool { return c >= 'A' && c <= 'Z' },
	"xdigit": func(c byte) bool { return isDigit(c) || (c|0x20 >= 'a' && c|0x20 <= 'f') },
}

func isAlpha(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// hasMeta reports whether s holds an unescaped wildcard.
func hasMeta(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '*', '?', '[':
			return true
		}
	}
	return false
}

// unescape drops the backslashes of a wildcard-free pattern.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// escapeMeta quotes wildcard bytes so a literal path can be spliced into a pattern.
func escapeMeta(s string) string {
	if !strings.ContainsAny(s, `*?[\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
