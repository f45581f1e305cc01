// SPDX-License-Identifier: Apache-2.0

// Command spdx checks that flowtap's source files carry an
// SPDX-License-Identifier header, or adds the missing ones (-fix). The
// rules are package tools/spdx's. Without file arguments it walks every
// file git knows in -root (tracked, and untracked but not ignored).
//
//	spdx -root ..                 # check: exit 1 listing each file without a header
//	spdx -root .. -fix            # add the missing headers
//	spdx -root .. -fix FILE...    # only these files
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/flowtap/flowtap/tools/spdx"
)

func main() {
	root := flag.String("root", "..", "the flowtap source tree")
	fix := flag.Bool("fix", false, "add missing headers instead of failing")
	flag.Parse()
	if err := run(*root, *fix, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "spdx:", err)
		os.Exit(1)
	}
}

func run(root string, fix bool, args []string) error {
	root, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	names, err := files(root, args)
	if err != nil {
		return err
	}
	var problems []string
	fixed := 0
	for _, name := range names {
		full := filepath.Join(root, filepath.FromSlash(name))
		content, err := os.ReadFile(full)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the work tree, not yet in git
		}
		if err != nil {
			return err
		}
		if fix {
			if out, changed := spdx.Fix(name, content); changed {
				st, err := os.Stat(full)
				if err != nil {
					return err
				}
				if err := os.WriteFile(full, out, st.Mode().Perm()); err != nil {
					return err
				}
				fmt.Println("added header:", name)
				fixed++
				content = out
			}
		}
		if err := spdx.Check(name, content); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%d of %d files fail:\n  %s", len(problems), len(names), strings.Join(problems, "\n  "))
	}
	if fix {
		fmt.Printf("%d headers added, %d files checked\n", fixed, len(names))
	}
	return nil
}

// files returns args relative to root, or every file git knows in root.
func files(root string, args []string) ([]string, error) {
	if len(args) > 0 {
		var out []string
		for _, a := range args {
			abs, err := filepath.Abs(a)
			if err != nil {
				return nil, err
			}
			rel, err := filepath.Rel(root, abs)
			if err != nil || strings.HasPrefix(rel, "..") {
				return nil, fmt.Errorf("%s is outside -root %s", a, root)
			}
			out = append(out, filepath.ToSlash(rel))
		}
		return out, nil
	}
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git ls-files in %s: %w: %s", root, err, stderr.Bytes())
	}
	var names []string
	for _, n := range strings.Split(string(out), "\x00") {
		if n != "" {
			names = append(names, n)
		}
	}
	return names, nil
}
