package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

// keyChars is csync2's key alphabet; with exactly 64 characters, the low 6
// bits of a random byte pick one uniformly.
const keyChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._"

func keygenCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:      "keygen",
		Usage:     "write a new group key to FILE: 64 characters of [A-Za-z0-9._], mode 0600; never overwrites (csync2 -k)",
		ArgsUsage: "FILE",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("keygen needs exactly one FILE")
			}
			if err := writeKey(c.Args().First()); err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(env.Stdout, struct {
					KeyFile string `json:"key_file"`
				}{c.Args().First()})
			}
			return nil
		},
	}
}

func writeKey(path string) error {
	var raw [64]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	key := make([]byte, 0, 65)
	for _, b := range raw {
		key = append(key, keyChars[b&63])
	}
	key = append(key, '\n')
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("key file %s exists; keygen never overwrites a key (remove it first if you really mean to replace it, then copy the new one to every node)", path)
	}
	if err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	return f.Close()
}
