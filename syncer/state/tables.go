package state

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// protectTables runs before badger.Open. badger deletes every .sst that its
// MANIFEST does not list, even in read-only mode, so a truncated or lost
// MANIFEST would silently destroy the whole DB. Here:
//   - a MANIFEST that lists no table while .sst files exist in a used DB is
//     refused without touching anything (ErrNoSentinel: the DB is lost);
//   - other unlisted tables (normal after a crash during compaction) are
//     moved to <Dir>/orphans-<time>/ instead of deleted; the caller removes
//     that directory once the DB has proven sound.
func protectTables(dir string, used, allowRebuild bool, log *slog.Logger) (aside string, err error) {
	ssts, err := sstIDs(dir)
	if err != nil || len(ssts) == 0 {
		return "", err
	}
	listed := map[uint64]badger.TableManifest{}
	fp, err := os.Open(filepath.Join(dir, badger.ManifestFilename))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return "", fmt.Errorf("open state db %q: %w", dir, err)
	default:
		m, _, rerr := badger.ReplayManifestFile(fp, 0, badgerOptions(dir, true, log))
		fp.Close()
		if rerr != nil {
			return "", corruptError(dir, "MANIFEST: "+shortCause(rerr))
		}
		listed = m.Tables
	}
	var orphans []uint64
	for _, id := range ssts {
		if _, ok := listed[id]; !ok {
			orphans = append(orphans, id)
		}
	}
	if len(orphans) == 0 {
		return "", nil
	}
	if len(listed) == 0 && used && !allowRebuild {
		return "", &dbError{ErrNoSentinel, fmt.Sprintf(
			"state db %q has lost its sentinel although it was used before (its MANIFEST lists none of its %d tables); "+
				"nothing was changed; run `ocf-csync rebuild` to rebuild it from a scan", dir, len(ssts))}
	}
	aside = filepath.Join(dir, "orphans-"+time.Now().Format("20060102-150405.000"))
	if err := os.Mkdir(aside, 0o700); err != nil {
		return "", fmt.Errorf("state db %q: keep unlisted tables: %w", dir, err)
	}
	for _, id := range orphans {
		n := fmt.Sprintf("%06d.sst", id)
		if err := os.Rename(filepath.Join(dir, n), filepath.Join(aside, n)); err != nil {
			return aside, fmt.Errorf("state db %q: keep unlisted table: %w", dir, err)
		}
	}
	log.Warn("state db had tables its MANIFEST does not list (left by a crash?); moved aside",
		"tables", len(orphans), "moved_to", aside)
	return aside, syncDir(dir)
}

// sstIDs lists the table ids in dir (badger names them %06d.sst).
func sstIDs(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read state db directory %q: %w", dir, err)
	}
	var ids []uint64
	for _, e := range ents {
		n, ok := strings.CutSuffix(e.Name(), ".sst")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		if id, err := strconv.ParseUint(n, 10, 64); err == nil {
			ids = append(ids, id)
		}
	}
	return ids, nil
}
