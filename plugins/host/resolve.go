// SPDX-License-Identifier: Apache-2.0

package host

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/flowtap/flowtap/internal/naming"
)

// BinaryPrefix is how a built-in sink's plugin binary is named: the sink
// "stdout" is the program "flowtap-sink-stdout".
const BinaryPrefix = "flowtap-sink-"

// Resolve finds the executable for a sink plugin.
//
// A plugin containing a "/" is an absolute path to a plugin binary (the
// config loader resolves a relative one against the config file's
// directory; flowtap never looks for a plugin in its working directory). Anything else is a sink name: Resolve
// looks for "flowtap-sink-<name>" first in the directory of the running
// flowtap executable (where `make build` puts the built-in sinks), then in
// $PATH. The error names every place it looked and how to fix it.
func Resolve(plugin string) (string, error) {
	if plugin == "" {
		return "", errors.New("resolve sink plugin: no plugin given: set it to a sink name such as \"stdout\" or to a path to a plugin binary")
	}
	if strings.Contains(plugin, "/") {
		if !filepath.IsAbs(plugin) {
			return "", fmt.Errorf("resolve sink plugin %q: a relative path: flowtap does not look for plugins in its working directory; give an absolute path (in a config file, a relative path is relative to the file's directory)", plugin)
		}
		path := filepath.Clean(plugin)
		if err := checkExecutable(path); err != nil {
			return "", fmt.Errorf("resolve sink plugin %q: %w", plugin, err)
		}
		return path, nil
	}
	if !naming.Valid(plugin) {
		return "", fmt.Errorf("resolve sink plugin %q: not a sink name (%s) nor a path (containing '/')", plugin, naming.Rule)
	}
	bin := BinaryPrefix + plugin

	var tried []string
	if self, err := os.Executable(); err == nil {
		candidate := filepath.Join(filepath.Dir(self), bin)
		switch err := checkExecutable(candidate); {
		case err == nil:
			return candidate, nil
		case errors.Is(err, fs.ErrNotExist):
			tried = append(tried, candidate)
		default:
			return "", fmt.Errorf("resolve sink plugin %q: %w", plugin, err)
		}
	}
	if path, err := exec.LookPath(bin); err == nil {
		return filepath.Abs(path)
	}
	tried = append(tried, "$PATH")
	return "", fmt.Errorf("resolve sink plugin %q: no executable %q in %s: run \"make build\" to build the built-in sinks next to flowtap, install %s in $PATH, or set the plugin to the path of a plugin binary",
		plugin, bin, strings.Join(tried, " or "), bin)
}

// checkExecutable reports why path cannot be run as a plugin, if it
// cannot.
func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		// The caller names the path; the *fs.PathError would again.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return pe.Err
		}
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not executable (chmod +x it)", path)
	}
	return nil
}
