package config

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Severity of a lint Issue.
type Severity string

const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Issue is one finding of Lint, at a position in the config.
type Issue struct {
	Pos      Pos
	Severity Severity
	Message  string
}

func (i Issue) String() string {
	if s := i.Pos.String(); s != "" {
		return fmt.Sprintf("%s: %s: %s", s, i.Severity, i.Message)
	}
	return fmt.Sprintf("%s: %s", i.Severity, i.Message)
}

// Lint checks what Parse lets through but this node should not run with,
// on this host. Errors: a group key file that is missing, unreadable,
// shorter than MinKeyLen or readable by group or others; a backup
// directory inside an include set; "%%" inside quotes in an exec. Warnings:
// an include root missing on this host, a relative pattern ("include
// tmp/x"), a group without include, a group name used twice, and Parse's
// own warnings (a host listed twice, ...). Sorted by position.
//
// Lint reads the file system, so it belongs to `config check` and the
// agent's validate-all, not to Parse: a config copied from another host
// still parses.
func (v *NodeView) Lint() []Issue {
	var out []Issue
	add := func(pos Pos, sev Severity, format string, a ...any) {
		out = append(out, Issue{Pos: pos, Severity: sev, Message: fmt.Sprintf(format, a...)})
	}
	c := v.Config
	for _, w := range c.Warnings {
		add(w.Pos, SeverityWarning, "%s", w.Msg)
	}

	// The whole config: structure.
	first := map[string]Pos{}
	for _, g := range c.Groups {
		if p, dup := first[g.Name]; dup {
			add(g.Pos, SeverityWarning, "group %q is defined twice (first at %s); give each group its own name", g.Name, p)
		} else {
			first[g.Name] = g.Pos
		}
		includes := 0
		for _, pt := range g.Patterns {
			if pt.Include && !pt.Compare {
				includes++
			}
			if !pt.IsPath() && strings.Contains(pt.Text, "/") {
				add(pt.Pos, SeverityWarning, "%s %q is relative: a pattern without a leading '/' or %%prefix%% matches base names only, which never contain '/'; write the absolute path",
					patternWord(pt), pt.Text)
			}
		}
		if includes == 0 {
			add(g.Pos, SeverityWarning, "group %q has no include: it syncs nothing", g.Name)
		}
		for _, a := range g.Actions {
			for i, x := range a.Exec {
				if quotedPercent(x) {
					pos := a.Pos
					if i < len(a.ExecPos) {
						pos = a.ExecPos[i]
					}
					add(pos, SeverityError, "exec %q puts %%%% inside quotes: the file names are quoted already, and inside other quotes a name holding a quote or $(...) runs as a command as root; write %%%% bare", x)
				}
			}
		}
	}

	// This node's groups, on this host.
	keys := map[string]bool{}
	for _, g := range v.Groups {
		if !keys[g.Key] {
			keys[g.Key] = true
			if err := checkKeyFile(g.Key); err != nil {
				add(cmp.Or(g.KeyPos, g.Pos), SeverityError, "group %s: %v", g.Name, err)
			}
		}
		if g.BackupsEnabled() {
			if why := v.insideIncludes(g.BackupDir); why != "" {
				add(cmp.Or(g.BackupDirPos, g.Pos), SeverityError, "group %s: backup-directory %s %s: a peer could plant links there that the next backup follows; keep backups outside every include", g.Name, g.BackupDir, why)
			}
		}
		for i, pt := range g.Patterns {
			if !pt.Include || pt.Compare || !pt.IsPath() || i >= len(g.pats) {
				continue
			}
			root := literalRoot(g.pats[i].text)
			if _, err := os.Lstat(root); errors.Is(err, os.ErrNotExist) {
				add(pt.Pos, SeverityWarning, "include %s: %s does not exist on this host (%s); it is created when a peer sends files of it", pt.Text, root, v.Name)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b Issue) int {
		return cmp.Or(cmp.Compare(a.Pos.File, b.Pos.File), cmp.Compare(a.Pos.Line, b.Pos.Line), cmp.Compare(a.Pos.Col, b.Pos.Col))
	})
	return out
}

// insideIncludes says how dir lies in this node's include set ("" if not):
// it is synced itself, or an include reaches below it.
func (v *NodeView) insideIncludes(dir string) string {
	if !filepath.IsAbs(dir) {
		return ""
	}
	dir = filepath.Clean(dir)
	for _, g := range v.Groups {
		if synced, _ := g.Match(dir, true); synced {
			return "is inside the include set of group " + g.Name
		}
		for _, r := range g.roots(true) {
			if under(r, dir) {
				return fmt.Sprintf("holds %s, included by group %s", r, g.Name)
			}
		}
	}
	return ""
}

func patternWord(p Pattern) string {
	switch {
	case p.Compare:
		return "compare"
	case p.Include:
		return "include"
	}
	return "exclude"
}

// quotedPercent reports whether %% stands inside single or double quotes
// in a shell command line. Backslash escapes outside quotes and inside
// double quotes are honoured.
func quotedPercent(s string) bool {
	var quote byte // 0, '\'' or '"'
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case quote == 0 && ch == '\\', quote == '"' && ch == '\\':
			i++
		case quote == 0 && (ch == '\'' || ch == '"'):
			quote = ch
		case quote != 0 && ch == quote:
			quote = 0
		case quote != 0 && ch == '%' && i+1 < len(s) && s[i+1] == '%':
			return true
		}
	}
	return false
}

// Counts returns how many issues are errors and warnings.
func Counts(issues []Issue) (errs, warnings int) {
	for _, i := range issues {
		if i.Severity == SeverityError {
			errs++
		} else {
			warnings++
		}
	}
	return errs, warnings
}
