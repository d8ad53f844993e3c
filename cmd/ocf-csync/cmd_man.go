package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// manCommand prints ocf-csync(8), generated from the command line itself
// (make deb installs it as /usr/share/man/man8/ocf-csync.8.gz).
func manCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:   "man",
		Usage:  "print the ocf-csync(8) manual page (roff)",
		Hidden: true,
		Action: func(c *cli.Context) error {
			page, err := c.App.ToManWithSection(8)
			if err != nil {
				return fmt.Errorf("generate the manual page: %w", err)
			}
			_, err = fmt.Fprint(env.Stdout, page)
			return err
		},
	}
}

// appDescription is the manual page's DESCRIPTION (and --help's).
const appDescription = `ocf-csync keeps directories and files identical on the nodes of an HA cluster,
the way csync2 does (it reads csync2.cfg syntax), but it pushes only from the
node that holds the cluster IP, runs a final sync when that node stops, and
after a failover blocks pushes to the failed node until a reconciliation has
sorted every difference. Contents travel as rsync-style deltas over SSH.

The binary picks its mode from how it is called: as the OCF resource agent
ocf:csync:mirror (/usr/lib/ocf/resource.d/csync/mirror) when OCF_ROOT is set
and the argument is an OCF action; as csync2 (the csync2 alternative, or
"ocf-csync csync2 ARGS") with csync2's flags and exit codes; as the heartbeat
haresources script through any other link name (/etc/ha.d/resource.d/mirror
[CONFIG] start|stop|status); otherwise as this command line.

The config is /etc/ocf-csync.cfg, else /etc/csync2.cfg; --config,
$OCF_CSYNC_CONFIG and the agent's config parameter override it. State lives in
/var/lib/ocf-csync/<config name>.

Exit codes: 0 success; 1 something did not sync (a conflict, a refused file, a
peer down); 2 usage error, or an empty list; 3 invalid config; 4 the state
database needs "ocf-csync rebuild"; 75 busy; 130 interrupted.

See /usr/share/doc/ocf-csync/README.md (with "Coming from csync2") and the
examples in /usr/share/doc/ocf-csync/examples.`
