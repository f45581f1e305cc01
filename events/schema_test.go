// SPDX-License-Identifier: Apache-2.0

package events_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowtap/flowtap/events"
)

var updateSchema = flag.Bool("update-schema", false, "rewrite testdata/schema.golden (refused when the schema changed but events.SchemaVersion did not)")

// TestSchemaVersion holds the built-in catalogue's schema against
// testdata/schema.golden. A changed schema must come with a new
// events.SchemaVersion: the test fails, even with -update-schema, when the
// event or context lines differ and the version line does not.
func TestSchemaVersion(t *testing.T) {
	cat, err := events.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := cat.WriteSchema(&b); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	path := filepath.Join("testdata", "schema.golden")
	raw, err := os.ReadFile(path)
	if err != nil && !(*updateSchema && os.IsNotExist(err)) {
		t.Fatalf("%v (go test ./events -run TestSchemaVersion -args -update-schema creates it)", err)
	}
	want := string(raw)
	if got == want {
		return
	}
	gotVersion, gotBody, _ := strings.Cut(got, "\n")
	wantVersion, wantBody, _ := strings.Cut(want, "\n")
	if want != "" && gotBody != wantBody && gotVersion == wantVersion {
		t.Fatalf("the event schema changed but events.SchemaVersion is still %s: bump it in events/schema.go "+
			"(MAJOR: an event or field removed, renamed or retyped; MINOR: only additions; PATCH: descriptions), "+
			"then run go test ./events -run TestSchemaVersion -args -update-schema\n--- now\n%s\n--- %s\n%s",
			events.SchemaVersion, got, path, want)
	}
	if *updateSchema {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s is out of date (go test ./events -run TestSchemaVersion -args -update-schema rewrites it):\n--- now\n%s\n--- %s\n%s", path, got, path, want)
}
