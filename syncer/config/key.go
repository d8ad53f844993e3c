package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// MinKeyLen is the shortest group key accepted, as csync2 requires.
const MinKeyLen = 32

// ReadKey returns the group key in path: its first line, trimmed, at least
// MinKeyLen characters from [A-Za-z0-9._] (csync2 semantics).
func ReadKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read group key: %w", err)
	}
	defer f.Close()
	// A key is a line; a huge file is a wrong path, not a key.
	line, err := bufio.NewReaderSize(io.LimitReader(f, 4096), 4096).ReadSlice('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("group key file %s: the first line is longer than 4096 bytes; generate a key with `ocf-csync keygen`", path)
		}
		return nil, fmt.Errorf("read group key file %s: %w", path, err)
	}
	key := bytes.TrimSpace(line)
	if len(key) < MinKeyLen {
		return nil, fmt.Errorf("group key file %s: the key has %d characters, at least %d are needed; generate one with `ocf-csync keygen`", path, len(key), MinKeyLen)
	}
	for i, ch := range key {
		if !(ch >= 'A' && ch <= 'Z' || ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '.' || ch == '_') {
			return nil, fmt.Errorf("group key file %s: character %d of the key is not one of [A-Za-z0-9._]; generate a key with `ocf-csync keygen`", path, i+1)
		}
	}
	return append([]byte(nil), key...), nil
}

// checkKeyFile is what Lint says about a key file: it must exist, be
// readable, hold a valid key, and be readable by its owner only (the key
// proves group membership; a copy lets anyone push as a member).
func checkKeyFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("key file %s does not exist on this host; copy it from another node, or make one with 'ocf-csync keygen %s'", path, path)
		}
		return fmt.Errorf("key file %s: %v", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("key file %s is not a regular file", path)
	}
	if _, err := ReadKey(path); err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("key file %s is readable or writable by group or others (mode %04o); run: chmod 600 %s", path, perm, path)
	}
	return nil
}
