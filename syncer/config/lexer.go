package config

import (
	"fmt"
	"strconv"
)

type tokKind int

const (
	tEOF    tokKind = iota
	tWord           // bare word
	tString         // "quoted string"
	tLBrace
	tRBrace
	tLParen
	tRParen
	tSemi
	tColon
	tAt
)

var punct = map[byte]tokKind{
	'{': tLBrace, '}': tRBrace, '(': tLParen, ')': tRParen,
	';': tSemi, ':': tColon, '@': tAt,
}

type token struct {
	kind tokKind
	text string
	pos  Pos
}

// reserved are csync2's keywords. Its lexer turns them into keyword tokens
// wherever they appear, so a bare one can never be a value (quote it).
// Treating them the same way catches a missing ';' before the next statement.
var reserved = map[string]bool{
	"nossl": true, "ignore": true, "group": true, "host": true, "exclude": true,
	"include": true, "compare": true, "key": true, "auto": true, "action": true,
	"pattern": true, "exec": true, "logfile": true, "do-local": true,
	"do-local-only": true, "prefix": true, "on": true, "backup-directory": true,
	"backup-generations": true, "no-cygwin-lowercase": true, "config": true,
	"database": true, "tempdir": true, "lock-timeout": true,
}

func (t token) is(word string) bool { return t.kind == tWord && t.text == word }

func (t token) isValue() bool {
	return t.kind == tString || (t.kind == tWord && !reserved[t.text])
}

// describe names the token for "found ..." in error messages.
func (t token) describe() string {
	switch t.kind {
	case tEOF:
		return "end of file"
	case tWord:
		if reserved[t.text] {
			return "keyword " + strconv.Quote(t.text)
		}
		return strconv.Quote(t.text)
	case tString:
		return "quoted string " + strconv.Quote(t.text)
	}
	return "'" + t.text + "'"
}

// lexer splits one file into csync2 tokens.
type lexer struct {
	file      string
	src       []byte
	off       int
	line, col int
}

func newLexer(file string, src []byte) *lexer {
	return &lexer{file: file, src: src, line: 1, col: 1}
}

func (l *lexer) pos() Pos { return Pos{File: l.file, Line: l.line, Col: l.col} }

// advance moves over n bytes, keeping line and (rune) column.
func (l *lexer) advance(n int) {
	for ; n > 0 && l.off < len(l.src); n-- {
		c := l.src[l.off]
		l.off++
		switch {
		case c == '\n':
			l.line++
			l.col = 1
		case c&0xC0 != 0x80: // count runes, not UTF-8 continuation bytes
			l.col++
		}
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// isWordByte: a bare word may not hold whitespace or @ ; ( ) # ".
func isWordByte(c byte) bool {
	switch c {
	case ' ', '\t', '\r', '\n', '@', ';', '(', ')', '#', '"':
		return false
	}
	return true
}

func (l *lexer) next() (token, *Error) {
	for l.off < len(l.src) {
		c := l.src[l.off]
		switch {
		case isSpace(c):
			l.advance(1)
		case c == '#':
			for l.off < len(l.src) && l.src[l.off] != '\n' {
				l.advance(1)
			}
		default:
			return l.token()
		}
	}
	return token{kind: tEOF, pos: l.pos()}, nil
}

func (l *lexer) token() (token, *Error) {
	start := l.pos()
	c := l.src[l.off]
	// A word never starts with a brace, so "{host" reads as "{" "host"; inside
	// a word braces are literal, as in csync2.
	if k, ok := punct[c]; ok && c != ':' { // ':' may start a word ("a:b" is one word)
		l.advance(1)
		return token{kind: k, text: string(c), pos: start}, nil
	}
	if c == '"' {
		end := l.off + 1
		for end < len(l.src) && l.src[end] != '"' && l.src[end] != '\n' {
			end++
		}
		if end >= len(l.src) || l.src[end] != '"' {
			found := "end of file"
			if end < len(l.src) {
				found = "end of line"
			}
			return token{}, &Error{Pos: start, Msg: fmt.Sprintf("expected closing '\"' of quoted string, found %s", found)}
		}
		text := string(l.src[l.off+1 : end])
		l.advance(end + 1 - l.off)
		return token{kind: tString, text: text, pos: start}, nil
	}
	end := l.off
	for end < len(l.src) && isWordByte(l.src[end]) {
		end++
	}
	// A word may not end in ':'; the colons become tokens of their own.
	for end > l.off && l.src[end-1] == ':' {
		end--
	}
	if end == l.off { // only colons
		l.advance(1)
		return token{kind: tColon, text: ":", pos: start}, nil
	}
	text := string(l.src[l.off:end])
	l.advance(end - l.off)
	return token{kind: tWord, text: text, pos: start}, nil
}
