package ha

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// LocalNodeName is this node's name when none is given: `crm_node -n`
// (Pacemaker's name for it), else the host name; lower-cased, as csync2
// compares host names (DESIGN §2).
func LocalNodeName(ctx context.Context) (string, error) {
	if path, err := exec.LookPath("crm_node"); err == nil {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		out, err := exec.CommandContext(cctx, path, "-n").Output()
		if n := strings.TrimSpace(string(out)); err == nil && n != "" {
			return strings.ToLower(n), nil
		}
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("find this node's name: %w (give it explicitly)", err)
	}
	return strings.ToLower(h), nil
}
