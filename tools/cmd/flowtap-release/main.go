// SPDX-License-Identifier: Apache-2.0

// Command flowtap-release packs the binaries 'make dist' cross-compiled
// into release artefacts. The Makefile runs it; see tools/README.md.
//
//	flowtap-release dist  -root .. -version v0.1.0 -commit HASH -epoch 1764972000 -bin ../bin/release -out ../dist
//	flowtap-release image -root .. -version v0.1.0 -commit HASH -epoch 1764972000 -bin ../bin/release -out ../dist
//
// dist writes one reproducible tar.gz per platform and the CycloneDX SBOM;
// image writes one OCI archive per platform. Both rewrite SHA256SUMS.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"time"

	"github.com/flowtap/flowtap/tools/release"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "flowtap-release:", err)
		os.Exit(1)
	}
}

const usage = "usage: flowtap-release dist|image -root DIR -version vX.Y.Z -commit HASH -epoch SECONDS -bin DIR -out DIR [-platforms linux/amd64,linux/arm64]"

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	what := args[0]
	fs := flag.NewFlagSet("flowtap-release "+what, flag.ContinueOnError)
	var (
		c         release.Config
		epoch     string
		platforms string
		sbom      bool
		toolsDir  string
	)
	fs.StringVar(&c.Root, "root", "..", "the flowtap source tree")
	fs.StringVar(&c.Version, "version", "", "semantic version with its v (internal/release/version.sh)")
	fs.StringVar(&c.Commit, "commit", "", "full commit hash the binaries were built from")
	fs.StringVar(&epoch, "epoch", "", "commit time in seconds since 1970 (SOURCE_DATE_EPOCH)")
	fs.StringVar(&c.BinDir, "bin", "", "directory with one <os>_<arch> directory of binaries per platform")
	fs.StringVar(&c.OutDir, "out", "", "directory for the artefacts")
	fs.StringVar(&platforms, "platforms", "linux/amd64,linux/arm64", "comma-separated OS/ARCH list")
	fs.BoolVar(&sbom, "sbom", true, "dist: also write the CycloneDX SBOM")
	fs.StringVar(&toolsDir, "tools", ".", "the tools module (pins the SBOM generator)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q\n%s", fs.Args(), usage)
	}
	secs, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil || secs < 0 {
		return fmt.Errorf("-epoch %q: want seconds since 1970, e.g. $(git log -1 --format=%%ct)", epoch)
	}
	c.Epoch = time.Unix(secs, 0).UTC()
	if c.Commit == "" || c.BinDir == "" || c.OutDir == "" {
		return fmt.Errorf("-commit, -bin and -out are required\n%s", usage)
	}
	if c.Platforms, err = release.ParsePlatforms(platforms); err != nil {
		return err
	}
	if err := release.CheckVersion(c.Version); err != nil {
		return err
	}
	switch what {
	case "dist":
		paths, err := c.Archives()
		if err != nil {
			return err
		}
		if sbom {
			p, err := c.WriteSBOM(ctx, toolsDir)
			if err != nil {
				return err
			}
			paths = append(paths, p)
		}
		report(paths)
	case "image":
		var paths []string
		for _, p := range c.Platforms {
			path, err := c.WriteImage(p)
			if err != nil {
				return err
			}
			paths = append(paths, path)
		}
		report(paths)
	default:
		return fmt.Errorf("unknown command %q\n%s", what, usage)
	}
	return release.WriteSums(c.OutDir)
}

func report(paths []string) {
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil {
			fmt.Printf("%s\t%d bytes\n", p, st.Size())
		}
	}
}
