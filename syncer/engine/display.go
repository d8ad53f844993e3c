package engine

import (
	"strconv"
	"unicode"
	"unicode/utf8"
)

// DisplayPath prints a path as is when it is plain text, else Go-quoted, so
// a newline or invalid UTF-8 in a name cannot break a line-based output.
func DisplayPath(p string) string {
	if !utf8.ValidString(p) {
		return strconv.Quote(p)
	}
	for _, r := range p {
		if unicode.IsControl(r) {
			return strconv.Quote(p)
		}
	}
	if len(p) > 0 && (p[0] == '"' || p[len(p)-1] == ' ') {
		return strconv.Quote(p)
	}
	return p
}
