// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"os"
	"testing"
)

// Golden compares got with the golden file at path or, when update is
// set (each package's -update test flag), rewrites the file with got. A
// missing file or a difference fails t, saying how to rewrite the file.
func Golden(t testing.TB, path, got string, update bool) {
	t.Helper()
	if update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -args -update creates it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -args -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
