// SPDX-License-Identifier: Apache-2.0

package privdrop

import (
	"os"
	"slices"
	"strconv"
	"testing"
)

// TestReadStatus reads this process's own status: its uid, and masks
// that agree with each other (effective within permitted).
func TestReadStatus(t *testing.T) {
	st, err := ReadStatus("self")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.UID) != 4 || st.UID[1] != strconv.Itoa(os.Geteuid()) {
		t.Errorf("Uid = %v, want the effective uid %d second", st.UID, os.Geteuid())
	}
	if st.Eff&^st.Prm != 0 {
		t.Errorf("effective %#x outside permitted %#x", st.Eff, st.Prm)
	}
	if LastCap() < 40 { // CAP_BPF is 39
		t.Errorf("LastCap = %d", LastCap())
	}
}

func TestCaps(t *testing.T) {
	if got := Caps(1<<5 | 1<<6 | 1<<7 | 1<<1); !slices.Equal(got, []string{"cap 1", "CAP_KILL", "CAP_SETGID", "CAP_SETUID"}) {
		t.Errorf("Caps = %v", got)
	}
}

// TestHoldsAndEffective agree with /proc/self/status for every
// capability (the main thread's sets, which this test thread shares: no
// thread changed its own).
func TestHoldsAndEffective(t *testing.T) {
	st, err := ReadStatus("self")
	if err != nil {
		t.Fatal(err)
	}
	for c := 0; c <= LastCap(); c++ {
		if got, want := Holds(c), st.Prm&(1<<uint(c)) != 0; got != want {
			t.Errorf("Holds(%s) = %v, /proc says %v", Name(c), got, want)
		}
		if got, want := Effective(c), st.Eff&(1<<uint(c)) != 0; got != want {
			t.Errorf("Effective(%s) = %v, /proc says %v", Name(c), got, want)
		}
	}
}
