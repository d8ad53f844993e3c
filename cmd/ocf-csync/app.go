package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"ocf-csync/ha"
	"ocf-csync/ocf"
	"ocf-csync/ra"
	"ocf-csync/syncer/config"
	"ocf-csync/syncer/state"
)

// Env is everything Main takes from the process, so tests can run it in-process.
type Env struct {
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
	Environ []string
}

func (e Env) getenv(k string) string { return ocf.NewEnv(e.Environ).Get(k) }

// sysRoot prefixes the default config paths; only tests change it.
var sysRoot = "/"

// errUsage marks command-line mistakes (exit 2 in CLI mode).
var errUsage = errors.New("usage error")

func usagef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// Main runs ocf-csync with args (args[0] is the program name).
func Main(ctx context.Context, env Env, args []string) error {
	state.Program = "ocf-csync " + version
	switch m := callMode(env, args); {
	case m == modeCsync2:
		return runCsync2(ctx, env, "csync2", args[1:])
	case m != modeCLI:
		return runAgent(ctx, env, args, m)
	case len(args) > 1 && args[1] == "csync2":
		// Before any global option parsing: -c, -v and -N mean csync2's here.
		return runCsync2(ctx, env, "ocf-csync csync2", args[2:])
	}
	app := newApp(env)
	args = globalsFirst(app.Flags, args)
	app.Metadata[argsKey] = args // forward hands them to the daemon
	err := app.RunContext(ctx, args)
	// cli reports an unknown (sub)command only through CommandNotFound,
	// which cannot fail the run.
	if name, ok := app.Metadata[unknownCommandKey].(string); ok && err == nil {
		return usagef("unknown command %q; run 'ocf-csync --help'", name)
	}
	return err
}

const unknownCommandKey = "unknown-command"

// globalsFirst moves global options written after the command name in
// front of it: urfave/cli v2 parses them only there, but the README's cron
// line is "ocf-csync sync --quiet" and csync2 takes options anywhere. It
// stops at "--"; arguments that are not global options stay in order.
func globalsFirst(flags []cli.Flag, args []string) []string {
	takesValue := map[string]bool{}
	for _, f := range flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			takesValue[n] = !isBool
		}
	}
	// global reports whether a is a global option and whether the next
	// argument is its value.
	global := func(a string) (ok, value bool) {
		if len(a) < 2 || a[0] != '-' || a == "--" {
			return false, false
		}
		n, _, hasEq := strings.Cut(strings.TrimLeft(a, "-"), "=")
		tv, ok := takesValue[n]
		return ok, tv && !hasEq
	}
	cmd := -1
	for i := 1; i < len(args); i++ {
		if ok, value := global(args[i]); ok {
			if value {
				i++
			}
			continue
		}
		if args[i] != "--" && !strings.HasPrefix(args[i], "-") {
			cmd = i
		}
		break
	}
	if cmd < 0 {
		return args
	}
	var moved, rest []string
	for i := cmd + 1; i < len(args); i++ {
		if args[i] == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		ok, value := global(args[i])
		if !ok {
			rest = append(rest, args[i])
			continue
		}
		moved = append(moved, args[i])
		if value && i+1 < len(args) {
			i++
			moved = append(moved, args[i])
		}
	}
	out := slices.Concat(args[:cmd], moved, args[cmd:cmd+1], rest)
	return out
}

// onUsageError turns cli's flag parsing errors into usage errors (exit 2)
// instead of printing them with the whole help text on stdout.
func onUsageError(c *cli.Context, err error, _ bool) error {
	name := []string{"ocf-csync"}
	for _, cc := range c.Lineage() {
		if cc.Command != nil && cc.Command.Name != "" && cc.Command.Name != "ocf-csync" {
			name = slices.Insert(name, 1, cc.Command.Name)
		}
	}
	return usagef("%v; run '%s --help'", err, strings.Join(name, " "))
}

func setOnUsageError(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = onUsageError
		setOnUsageError(c.Subcommands)
	}
}

func newApp(env Env) *cli.App {
	app := &cli.App{
		Name:            "ocf-csync",
		Usage:           "keep directories identical on the nodes of an HA cluster (csync2-compatible)",
		Version:         version,
		Writer:          env.Stdout,
		ErrWriter:       env.Stderr,
		HideHelpCommand: true,
		Description:     appDescription,
		// Shell completion: the packaged bash script asks
		// "ocf-csync ... --generate-bash-completion".
		EnableBashCompletion: true,
		ExitErrHandler:       func(*cli.Context, error) {}, // exit codes come from ExitCode, never from cli
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, EnvVars: []string{"OCF_CSYNC_CONFIG"}, Usage: "csync2-syntax config `FILE` (default " + config.DefaultFile + ", else " + config.Csync2File + ")"},
			&cli.StringFlag{Name: "node", Aliases: []string{"N"}, EnvVars: []string{"OCF_CSYNC_NODE"}, Usage: "this node's `NAME` as in the config's host lines (default: crm_node -n, then the hostname)"},
			&cli.StringFlag{Name: "state-dir", EnvVars: []string{"OCF_CSYNC_STATE_DIR"}, Usage: "state database `DIR` (default /var/lib/ocf-csync/<config name>)"},
			&cli.IntFlag{Name: "lock-timeout", Value: -1, Usage: "seconds to wait for the state database (default: the config's lock-timeout, 12)"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Count: new(int), Usage: "more output; repeat for debug"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "only errors"},
			&cli.BoolFlag{Name: "json", Usage: "machine-readable output where the output is data"},
		},
		Commands: []*cli.Command{
			configCommand(env),
			checkCommand(env),
			markCommand(env),
			listCommand(env),
			rebuildCommand(env),
			syncCommand(env),
			updateCommand(env),
			serveCommand(env),
			trustHostCommand(env),
			forceCommand(env),
			acceptRootCommand(env),
			statusCommand(env),
			unblockCommand(env),
			resolveCommand(env),
			conflictsCommand(env),
			compareCommand(env),
			diffCommand(env),
			keygenCommand(env),
			initCommand(env),
			pushConfigCommand(env),
			daemonCommand(env),
			versionCommand(env),
			csync2Command(env),
			manCommand(env),
		},
		Before: func(c *cli.Context) error {
			c.Context = withLogger(c.Context, newLogger(env.Stderr, verbosity(c)))
			return nil
		},
		CommandNotFound: func(c *cli.Context, name string) {
			c.App.Metadata[unknownCommandKey] = name // Main turns it into a usage error
		},
		OnUsageError: onUsageError,
		Metadata:     map[string]any{},
	}
	setOnUsageError(app.Commands)
	viaDaemon(env, app.Commands)
	return app
}

func verbosity(c *cli.Context) int {
	if c.Bool("quiet") {
		return -1
	}
	return c.Count("verbose")
}

// nodeName resolves this node's name: --node, then crm_node -n, then the
// hostname (DESIGN §2).
func nodeName(ctx context.Context, c *cli.Context) (string, error) {
	if n := flagString(c, "node"); n != "" {
		return strings.ToLower(n), nil
	}
	return ha.LocalNodeName(ctx)
}

// flagString finds a flag given on this command or any parent (serve takes
// --config and --node after its name, as the remote command line has them),
// or its environment variable; "" when none is set.
func flagString(c *cli.Context, name string) string {
	for _, cc := range c.Lineage() {
		if cc.IsSet(name) && cc.String(name) != "" {
			return cc.String(name)
		}
	}
	return ""
}

// loaded is a parsed config seen from this node.
type loaded struct {
	path string
	cfg  *config.Config
	view *config.NodeView
}

// configPath is --config (on this command or a parent) or
// $OCF_CSYNC_CONFIG, else the first default file that exists (DESIGN §4).
func configPath(ctx context.Context, c *cli.Context) (string, error) {
	if p := flagString(c, "config"); p != "" {
		return p, nil
	}
	loc, err := config.Locate(sysRoot)
	if err != nil {
		return "", err
	}
	if loc.Fallback {
		logger(ctx).Info(loc.Tried[0] + " does not exist: reading csync2's " + loc.Path)
	}
	return loc.Path, nil
}

func loadConfig(ctx context.Context, c *cli.Context) (*loaded, error) {
	l, err := loadConfigLinted(ctx, c)
	if err == nil {
		for _, w := range l.cfg.Warnings {
			logger(ctx).Warn(w.String())
		}
	}
	return l, err
}

// loadConfigLinted is loadConfig without logging the parser's warnings:
// for `config check`, whose lint reports them.
func loadConfigLinted(ctx context.Context, c *cli.Context) (*loaded, error) {
	path, err := configPath(ctx, c)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	name, err := nodeName(ctx, c)
	if err != nil {
		return nil, err
	}
	view, err := cfg.Node(name)
	if err != nil {
		if explicit := flagString(c, "node"); explicit != "" {
			if err := checkNode(cfg, name); err != nil {
				return nil, err
			}
		}
		return nil, err
	}
	return &loaded{path: path, cfg: cfg, view: view}, nil
}

// stateDir is --state-dir, else /var/lib/ocf-csync/<config file name sans .cfg>.
func stateDir(c *cli.Context, cfgPath string) string {
	if d := c.String("state-dir"); d != "" {
		return d
	}
	base := strings.TrimSuffix(filepath.Base(cfgPath), ".cfg")
	return filepath.Join("/var/lib/ocf-csync", base)
}

func openStore(ctx context.Context, c *cli.Context, l *loaded, rebuild bool) (*state.Store, error) {
	if s := servedFrom(ctx); s != nil {
		return servedStore(c, s), nil
	}
	rl := l.local(c, logger(ctx))
	if name := c.Command.Name; forwarded[name] && name != "serve" {
		// A daemon that starts while this waits for the database takes
		// the command (viaDaemon); serve has read its stdin by now.
		rl.DaemonUp = func() bool { return ra.DaemonAnswers(rl.StateDir) }
	}
	return rl.OpenStore(ctx, rebuild)
}

// local is the config as the ra package runs it, with this command's
// state dir, lock timeout and logger.
func (l *loaded) local(c *cli.Context, log *slog.Logger) *ra.Local {
	timeout := l.cfg.LockTimeout
	if s := c.Int("lock-timeout"); s >= 0 {
		timeout = time.Duration(s) * time.Second
	}
	return &ra.Local{ConfigPath: l.path, Config: l.cfg, View: l.view, StateDir: stateDir(c, l.path),
		LockTimeout: timeout, Log: log}
}

// session is what most commands start with: the config as this node sees
// it, the PATH arguments made absolute, and the state database.
type session struct {
	*loaded
	paths []string
	st    *state.Store
}

// openSession loads the config, resolves the arguments and opens the state
// database. A non-empty needPaths is the usage message when no PATH is given.
func openSession(c *cli.Context, needPaths string) (*session, error) {
	if needPaths != "" && c.NArg() == 0 {
		return nil, usagef("%s", needPaths)
	}
	l, err := loadConfig(c.Context, c)
	if err != nil {
		return nil, err
	}
	paths, err := absPaths(c, c.Args().Slice())
	if err != nil {
		return nil, err
	}
	st, err := openStore(c.Context, c, l, false)
	if err != nil {
		return nil, err
	}
	return &session{loaded: l, paths: paths, st: st}, nil
}
