package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"ocf-csync/syncer/setup"
)

func adminFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "admin-identity", Usage: "the administrator's SSH key `FILE` for the logins that write files on the nodes (default: ssh-agent, then ~/.ssh/id_ed25519, id_ecdsa, id_rsa)"},
		&cli.StringFlag{Name: "admin-user", Usage: "the administrator's login `USER` on the nodes (default: the config's ssh user)"},
	}
}

func adminOf(c *cli.Context) setup.Admin {
	return setup.Admin{IdentityFile: c.String("admin-identity"), User: c.String("admin-user")}
}

func initCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "set up a new cluster from this node: identity, group keys, state dir, known host keys, authorized_keys lines",
		Description: "Creates what is missing and never overwrites: the cluster's SSH identity (ed25519, 0600), each group's key,\n" +
			"the state directory. Records every node's host key (this node's too) only once its fingerprint is confirmed:\n" +
			"on a terminal by answering, else with --fingerprint HOST=SHA256:... (or --accept-new to trust keys on first use).\n" +
			"Prints the authorized_keys line every node needs; --install writes it there over SFTP through the administrator's\n" +
			"own SSH login. A second run changes nothing and says so.",
		Flags: append([]cli.Flag{
			&cli.StringSliceFlag{Name: "fingerprint", Usage: "`HOST=SHA256:...` expected host key fingerprint (repeat per host)"},
			&cli.BoolFlag{Name: "accept-new", Usage: "trust new host keys on first use, without a confirmed fingerprint"},
			&cli.BoolFlag{Name: "install", Usage: "write the authorized_keys line on every node (over SFTP, as the administrator)"},
			&cli.StringFlag{Name: "authorized-keys", Value: setup.DefaultAuthorizedKeys, Usage: "authorized_keys `PATH` on the nodes, relative to the login's home; %n is the node name, %u the user"},
		}, adminFlags()...),
		Action: func(c *cli.Context) error {
			ctx := c.Context
			l, err := loadConfig(ctx, c)
			if err != nil {
				return err
			}
			fps := map[string]string{}
			for _, f := range c.StringSlice("fingerprint") {
				host, fp, ok := strings.Cut(f, "=")
				if !ok || !strings.HasPrefix(fp, "SHA256:") {
					return usagef("--fingerprint %q: want HOST=SHA256:...", f)
				}
				fps[strings.ToLower(host)] = fp
			}
			asJSON := c.Bool("json")
			o := setup.InitOptions{
				Config: l.cfg, ConfigPath: l.path, Node: l.view.Name, StateDir: stateDir(c, l.path),
				Fingerprints: fps, AcceptNew: c.Bool("accept-new"), Confirm: confirmer(env),
				Install: c.Bool("install"), Admin: adminOf(c), AuthorizedKeys: c.String("authorized-keys"),
				Out: env.Stdout, Log: logger(ctx),
			}
			if asJSON {
				o.Out, o.Confirm = nil, nil // no prompt in the middle of a JSON document
			}
			rep, err := setup.Init(ctx, o)
			if !asJSON {
				return err
			}
			if werr := writeJSON(env.Stdout, struct {
				setup.InitReport
				Error *errorJSON `json:"error"`
			}{rep, errorObject(err)}); werr != nil {
				return werr
			}
			return reported(err)
		},
	}
}

// confirmer asks on the terminal; without one there is nobody to ask.
func confirmer(env Env) func(host, addr, keyType, fp string) (bool, error) {
	f, ok := env.Stdin.(*os.File)
	if !ok {
		return nil
	}
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err != nil {
		return nil
	}
	in := bufio.NewReader(f)
	return func(host, addr, keyType, fp string) (bool, error) {
		fmt.Fprintf(env.Stdout, "host %s (%s) offers %s key %s\n  compare it with the output of 'ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub' on %s.\n  Is it the right key? (yes/no) ", host, addr, keyType, fp, host)
		line, err := in.ReadString('\n')
		if err != nil {
			return false, fmt.Errorf("read the answer: %w", err)
		}
		return strings.TrimSpace(strings.ToLower(line)) == "yes", nil
	}
}
