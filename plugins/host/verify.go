package host

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
)

// verifyBinary refuses a plugin binary flowtap should not run: as root,
// one that a group or other users may write (anyone who can change it
// would run code as root); and, when pin is set, one whose SHA-256 is not
// pin (hex, case-insensitive).
func verifyBinary(path, pin string, euid int) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("check plugin binary: %w", err)
	}
	if euid == 0 && fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("plugin binary %s is writable by group or others (mode %s) and flowtap runs as root: refusing to run it (fix: chmod go-w %s)",
			path, fi.Mode().Perm(), path)
	}
	if pin == "" {
		return nil
	}
	want := strings.ToLower(strings.TrimSpace(pin))
	if len(want) != sha256.Size*2 {
		return fmt.Errorf("sha256 pin %q of plugin binary %s: not 64 hex digits", pin, path)
	}
	got, err := fileSHA256(path)
	if err != nil {
		return fmt.Errorf("hash plugin binary: %w", err)
	}
	if got != want {
		return fmt.Errorf("plugin binary %s has SHA-256 %s, but the config pins %s: refusing to run it (if the binary was updated on purpose, set sha256 to the new hash)",
			path, got, want)
	}
	return nil
}

// fileSHA256 returns the hex SHA-256 of the file at path.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
