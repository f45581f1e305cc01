// SPDX-License-Identifier: Apache-2.0

package host

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"io"
	"sync"
)

// newDrainToken returns a token no sink output will contain by accident.
func newDrainToken() []byte {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return []byte("\x00flowtap-drain-" + hex.EncodeToString(b[:]) + "\x00")
}

// stdioWriter receives one of a plugin's forwarded streams (go-plugin's
// SyncStdout or SyncStderr) and passes it on to w.
//
// go-plugin forwards a plugin's stdout through a pipe, a goroutine and a
// gRPC stream, and stops that stream as soon as the host closes the plugin:
// whatever is still on its way is lost. So at Close the plugin echoes a
// drain token after all its output (see sdk's Close), and stdioWriter cuts
// the token out of the stream and reports when it has seen it. Bytes that
// could be the start of the token are held back until the next write shows
// they are not.
//
// Writes come from go-plugin's one stdio goroutine; close may be called
// from another, so everything is under mu. After close, stdioWriter drops
// what still arrives: the caller may be reading w by then.
type stdioWriter struct {
	mu     sync.Mutex
	w      io.Writer
	token  []byte
	held   []byte // a tail of the stream that is a prefix of token
	seen   chan struct{}
	found  bool
	closed bool
}

func newStdioWriter(w io.Writer, token []byte) *stdioWriter {
	return &stdioWriter{w: w, token: token, seen: make(chan struct{})}
}

// Write implements io.Writer.
func (d *stdioWriter) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return len(p), nil
	}
	if d.found {
		return d.w.Write(p)
	}
	data := p
	if len(d.held) > 0 {
		data = append(d.held, p...)
		d.held = nil
	}
	if i := bytes.Index(data, d.token); i >= 0 {
		d.found = true
		close(d.seen)
		if err := d.write(data[:i]); err != nil {
			return len(p), err
		}
		return len(p), d.write(data[i+len(d.token):])
	}
	k := partialSuffix(data, d.token)
	if k > 0 {
		d.held = append([]byte(nil), data[len(data)-k:]...)
	}
	return len(p), d.write(data[:len(data)-k])
}

func (d *stdioWriter) write(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	_, err := d.w.Write(p)
	return err
}

// close passes on anything held back and stops forwarding.
func (d *stdioWriter) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	_ = d.write(d.held)
	d.held = nil
	d.closed = true
}

// partialSuffix returns the length of the longest proper prefix of token
// that data ends with.
func partialSuffix(data, token []byte) int {
	for i := max(0, len(data)-(len(token)-1)); i < len(data); i++ {
		if data[i] == token[0] && bytes.HasPrefix(token, data[i:]) {
			return len(data) - i
		}
	}
	return 0
}
