// SPDX-License-Identifier: Apache-2.0

package naming

import "testing"

func TestValid(t *testing.T) {
	for _, ok := range []string{"a", "default", "flows-2", "my_sink", "A9"} {
		if !Valid(ok) {
			t.Errorf("Valid(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", "a b", "a/b", "../x", "é", "a.b", "a\n"} {
		if Valid(bad) {
			t.Errorf("Valid(%q) = true", bad)
		}
	}
}
