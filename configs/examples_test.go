// SPDX-License-Identifier: Apache-2.0

package configs

import (
	"path/filepath"
	"testing"

	"github.com/flowtap/flowtap/events"
)

// TestExamplesAreValid loads and checks every example config. Whether the
// sink plugins accept their configs is checked by
// pipeline.TestExamplesPluginsAccept, which starts the plugins.
func TestExamplesAreValid(t *testing.T) {
	cat, err := events.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join("examples", "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 5 {
		t.Fatalf("only %d examples in configs/examples", len(files))
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			c, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Check(cat); err != nil {
				t.Fatal(err)
			}
		})
	}
}
