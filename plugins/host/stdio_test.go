// SPDX-License-Identifier: Apache-2.0

package host

import (
	"bytes"
	"testing"
)

// TestStdioWriterCutsToken feeds a stream holding the drain token, split
// into two writes at every possible point, and checks that the output is
// the stream without the token and that the token was seen.
func TestStdioWriterCutsToken(t *testing.T) {
	token := newDrainToken()
	stream := append(append([]byte("before \x00flow\x00"), token...), " after"...)
	want := []byte("before \x00flow\x00 after")
	for cut := 0; cut <= len(stream); cut++ {
		var out bytes.Buffer
		w := newStdioWriter(&out, token)
		for _, p := range [][]byte{stream[:cut], stream[cut:]} {
			if n, err := w.Write(p); n != len(p) || err != nil {
				t.Fatalf("cut %d: Write = %d, %v", cut, n, err)
			}
		}
		select {
		case <-w.seen:
		default:
			t.Errorf("cut %d: token not seen", cut)
		}
		w.close()
		if !bytes.Equal(out.Bytes(), want) {
			t.Errorf("cut %d: output %q, want %q", cut, out.Bytes(), want)
		}
	}
}

// TestStdioWriterHoldsOnlyPossibleToken checks that bytes that look like
// the start of the token are passed on once they turn out not to be, and
// at close at the latest.
func TestStdioWriterHoldsOnlyPossibleToken(t *testing.T) {
	token := newDrainToken()
	var out bytes.Buffer
	w := newStdioWriter(&out, token)
	_, _ = w.Write([]byte("line\n"))
	if out.String() != "line\n" {
		t.Fatalf("plain output held back: %q", out.String())
	}
	_, _ = w.Write(append([]byte("x"), token[:5]...))
	if out.String() != "line\nx" {
		t.Fatalf("output = %q, want the token prefix held back", out.String())
	}
	_, _ = w.Write([]byte("y"))
	if want := "line\nx" + string(token[:5]) + "y"; out.String() != want {
		t.Fatalf("output = %q, want %q", out.String(), want)
	}
	_, _ = w.Write(token[:3])
	w.close()
	if want := "line\nx" + string(token[:5]) + "y" + string(token[:3]); out.String() != want {
		t.Fatalf("close did not pass on held bytes: %q", out.String())
	}
	_, _ = w.Write([]byte("late"))
	if bytes.Contains(out.Bytes(), []byte("late")) {
		t.Error("write after close reached the output")
	}
}

func BenchmarkStdioWriter(b *testing.B) {
	w := newStdioWriter(discardWriter{}, newDrainToken())
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 64) // go-plugin forwards 1 KiB chunks
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		_, _ = w.Write(chunk)
	}
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }
