// SPDX-License-Identifier: Apache-2.0

// Package naming holds the one rule for the names a user gives or picks in
// flowtap: pipeline names, and sink names (a built-in sink's, or the
// <name> of a flowtap-sink-<name> plugin binary).
package naming

// Valid reports whether s is a name: not empty, and made of ASCII letters,
// digits, '-' and '_' only (so it is safe in a file name, a log field and
// a metric label).
func Valid(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return s != ""
}

// Rule says what Valid accepts, for error messages.
const Rule = "letters, digits, '-' and '_'"
