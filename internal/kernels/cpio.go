// SPDX-License-Identifier: Apache-2.0

package kernels

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
)

// CPIO writes an archive in the "newc" format the kernel unpacks as an
// initramfs (Documentation/driver-api/early-userspace/buffer-format.rst):
// per entry a 110-byte ASCII header, the name and its NUL padded to a
// multiple of four bytes, the data padded the same way; a TRAILER!!!
// entry ends it. Every entry is owned by root with mtime 0, so the same
// input gives the same bytes. Parent directories are added on demand
// (0755), since the kernel does not create them.
type CPIO struct {
	w    *bufio.Writer
	off  int64
	ino  uint32
	dirs map[string]bool // directories added
	rest map[string]bool // everything else added
	err  error
}

// File type bits of a cpio mode (as in stat's st_mode).
const (
	cpioDir     = 0o040000
	cpioRegular = 0o100000
	cpioSymlink = 0o120000
	cpioCharDev = 0o020000
)

// NewCPIO returns a writer on w; Close writes the trailer.
func NewCPIO(w io.Writer) *CPIO {
	return &CPIO{w: bufio.NewWriterSize(w, 1<<20), dirs: map[string]bool{".": true}, rest: map[string]bool{}}
}

// cleanName turns a path into an archive name: relative, clean, not
// empty and not escaping the root.
func cleanName(name string) (string, error) {
	n := path.Clean(strings.TrimLeft(name, "/"))
	if n == "." || n == ".." || strings.HasPrefix(n, "../") {
		return "", fmt.Errorf("cpio: bad entry name %q", name)
	}
	return n, nil
}

// perm keeps the permission, setuid/setgid and sticky bits of mode in
// their stat positions.
func perm(mode fs.FileMode) uint32 {
	m := uint32(mode.Perm())
	if mode&fs.ModeSetuid != 0 {
		m |= 0o4000
	}
	if mode&fs.ModeSetgid != 0 {
		m |= 0o2000
	}
	if mode&fs.ModeSticky != 0 {
		m |= 0o1000
	}
	return m
}

// Dir adds a directory (and its parents). Adding one twice is a no-op.
func (c *CPIO) Dir(name string, mode fs.FileMode) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	if c.dirs[n] {
		return c.err
	}
	if c.rest[n] {
		return c.fail(fmt.Errorf("cpio: %s is already in the archive as a file or link", n))
	}
	if err := c.parents(n); err != nil {
		return err
	}
	c.dirs[n] = true
	return c.entry(n, cpioDir|perm(mode), 2, 0, 0, 0, nil)
}

// File adds a regular file of size bytes read from r.
func (c *CPIO) File(name string, mode fs.FileMode, size int64, r io.Reader) error {
	n, err := c.leaf(name)
	if err != nil {
		return err
	}
	return c.entry(n, cpioRegular|perm(mode), 1, size, 0, 0, r)
}

// Bytes adds a regular file holding data.
func (c *CPIO) Bytes(name string, mode fs.FileMode, data []byte) error {
	return c.File(name, mode, int64(len(data)), strings.NewReader(string(data)))
}

// Symlink adds a symbolic link to target.
func (c *CPIO) Symlink(name, target string) error {
	n, err := c.leaf(name)
	if err != nil {
		return err
	}
	return c.entry(n, cpioSymlink|0o777, 1, int64(len(target)), 0, 0, strings.NewReader(target))
}

// CharDev adds a character device node.
func (c *CPIO) CharDev(name string, mode fs.FileMode, major, minor uint32) error {
	n, err := c.leaf(name)
	if err != nil {
		return err
	}
	return c.entry(n, cpioCharDev|perm(mode), 1, 0, major, minor, nil)
}

// Close writes the trailer and flushes; it does not close the underlying
// writer.
func (c *CPIO) Close() error {
	if err := c.entry("TRAILER!!!", 0, 1, 0, 0, 0, nil); err != nil {
		return err
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("cpio: %w", err)
	}
	return nil
}

// leaf checks a non-directory's name and adds its parents.
func (c *CPIO) leaf(name string) (string, error) {
	n, err := cleanName(name)
	if err != nil {
		return "", err
	}
	if c.dirs[n] || c.rest[n] {
		return "", c.fail(fmt.Errorf("cpio: %s is already in the archive", n))
	}
	if err := c.parents(n); err != nil {
		return "", err
	}
	c.rest[n] = true
	return n, nil
}

func (c *CPIO) parents(n string) error {
	if dir := path.Dir(n); !c.dirs[dir] {
		return c.Dir(dir, 0o755)
	}
	return c.err
}

func (c *CPIO) entry(name string, mode, nlink uint32, size int64, rmajor, rminor uint32, data io.Reader) error {
	if c.err != nil {
		return c.err
	}
	if size > 0xffffffff {
		return c.fail(fmt.Errorf("cpio: %s: %d bytes is too large for the newc format", name, size))
	}
	c.ino++
	ino := c.ino
	if name == "TRAILER!!!" {
		ino = 0
	}
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, 0, size, 0, 0, rmajor, rminor, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write([]byte(name))
	c.write([]byte{0})
	c.pad()
	if size > 0 {
		n, err := io.CopyN(c.w, data, size)
		c.off += n
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("%d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)
			}
			return c.fail(fmt.Errorf("cpio: %s: %w", name, err))
		}
		c.pad()
	}
	return c.err
}

func (c *CPIO) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.off += int64(n)
	if err != nil {
		c.fail(fmt.Errorf("cpio: %w", err))
	}
}

func (c *CPIO) pad() {
	if r := c.off % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

func (c *CPIO) fail(err error) error {
	if c.err == nil {
		c.err = err
	}
	return c.err
}
