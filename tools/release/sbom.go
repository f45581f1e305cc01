// SPDX-License-Identifier: Apache-2.0

package release

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// SBOMName is "flowtap_0.1.0_sbom.cdx.json" for v0.1.0.
func SBOMName(version string) string {
	return fmt.Sprintf("flowtap_%s_sbom.cdx.json", strings.TrimPrefix(version, "v"))
}

// cyclonedxGomod is the SBOM generator, a tool of tools/go.mod.
const cyclonedxGomod = "cyclonedx-gomod"

// WriteSBOM writes a CycloneDX (JSON) SBOM of the flowtap module into
// OutDir with cyclonedx-gomod's "mod" mode: every module the module's
// packages use (tests excluded), with versions, hashes and detected
// licenses. toolsDir is the tools module, which pins the generator.
//
// The generator's output is kept reproducible by omitting the timestamp
// and passing a serial number derived from the version and commit (a
// UUIDv5), instead of a random one.
func (c *Config) WriteSBOM(ctx context.Context, toolsDir string) (string, error) {
	tmp, err := os.MkdirTemp("", "flowtap-sbom-")
	if err != nil {
		return "", fmt.Errorf("sbom: %w", err)
	}
	defer os.RemoveAll(tmp)
	// 'go tool -n' builds the generator for this machine (or finds it in
	// the build cache) and prints its path; it then runs with the target
	// platform's environment.
	var path bytes.Buffer
	if err := run(ctx, toolsDir, nil, &path, "go", "tool", "-n", cyclonedxGomod); err != nil {
		return "", fmt.Errorf("sbom: build the generator: %w", err)
	}
	gen := strings.TrimSpace(path.String())
	root, err := filepath.Abs(c.Root)
	if err != nil {
		return "", fmt.Errorf("sbom: %w", err)
	}
	out := filepath.Join(tmp, "sbom.json")
	// The module is described for the first platform, the one whose
	// build constraints select the packages.
	env := []string{"CGO_ENABLED=0", "GOOS=" + c.Platforms[0].OS, "GOARCH=" + c.Platforms[0].Arch}
	if err := run(ctx, root, env, nil, gen, "mod", "-json", "-licenses", "-notimestamp",
		"-serial", "urn:uuid:"+uuid5(urlNamespace, "https://github.com/flowtap/flowtap@"+c.Version+"#"+c.Commit),
		"-output", out, root); err != nil {
		return "", fmt.Errorf("sbom: %w", err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return "", fmt.Errorf("sbom: %w", err)
	}
	var doc struct {
		BOMFormat  string            `json:"bomFormat"`
		Components []json.RawMessage `json:"components"`
	}
	if err := json.Unmarshal(data, &doc); err != nil || doc.BOMFormat != "CycloneDX" || len(doc.Components) == 0 {
		return "", fmt.Errorf("sbom: the generator wrote no CycloneDX document with components (%v)", err)
	}
	if err := os.MkdirAll(c.OutDir, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", c.OutDir, err)
	}
	dst := filepath.Join(c.OutDir, SBOMName(c.Version))
	if err := writeFileAtomic(dst, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
		return "", err
	}
	return dst, nil
}

// run runs name with args in dir, extra added to the environment, its
// standard output into stdout when not nil; a failure carries the
// command's output.
func run(ctx context.Context, dir string, extra []string, stdout io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), extra...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, out.Bytes())
	}
	return nil
}

// urlNamespace is RFC 4122's name space for URLs.
var urlNamespace = [16]byte{0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}

// uuid5 is the RFC 4122 name-based (SHA-1) UUID of name in ns: the same
// inputs always give the same UUID.
func uuid5(ns [16]byte, name string) string {
	h := sha1.New()
	h.Write(ns[:])
	h.Write([]byte(name))
	u := h.Sum(nil)[:16]
	u[6] = u[6]&0x0f | 0x50 // version 5
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
