// Command mkdeb builds the ocf-csync .deb from packaging/nfpm.yaml with
// nfpm as a library (pinned in go.mod): go run ./packaging/mkdeb -o FILE.
// The yaml's ${VERSION}, ${ARCH} and ${BUILD} come from the environment.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
)

func main() {
	cfgPath := flag.String("config", "packaging/nfpm.yaml", "nfpm `FILE`")
	out := flag.String("o", "", "write the .deb to `FILE`")
	flag.Parse()
	if err := build(*cfgPath, *out); err != nil {
		fmt.Fprintf(os.Stderr, "mkdeb: %v\n", err)
		os.Exit(1)
	}
}

func build(cfgPath, out string) error {
	if out == "" {
		return fmt.Errorf("-o FILE is required")
	}
	for _, v := range []string{"VERSION", "ARCH", "BUILD"} {
		if os.Getenv(v) == "" {
			return fmt.Errorf("$%s is not set (make deb sets it)", v)
		}
	}
	cfg, err := nfpm.ParseFile(cfgPath)
	if err != nil {
		return fmt.Errorf("read %s: %w", cfgPath, err)
	}
	info, err := cfg.Get("deb")
	if err != nil {
		return err
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return fmt.Errorf("prepare the package: %w", err)
	}
	pkg, err := nfpm.Get("deb")
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := pkg.Package(info, f); err != nil {
		f.Close()
		os.Remove(out)
		return fmt.Errorf("build %s: %w", out, err)
	}
	return f.Close()
}
