// SPDX-License-Identifier: Apache-2.0

// Package limits holds the bounds of flowtap's kernel side that user space
// checks against or mirrors: the ring buffer's sizes and the DNS payload
// bound. It is a leaf package (the standard library only), so that the
// config loader and the pcap replay know them without linking the BPF
// loader (package bpf and cilium/ebpf): replay needs no BPF at all.
package limits

import (
	"fmt"
	"math/bits"
	"os"
)

// DefaultRingBufferSize is the ring buffer size in bytes that bpf.Open
// uses when its RingBufferSize is 0: 32 MiB, about 220,000 records of 152
// bytes (144 and an 8-byte header), over a second of 20,000 new
// connections per second (see bpf/README.md, "Ring buffer size").
const DefaultRingBufferSize = 32 << 20

// MaxRingBufferSize is the largest ring buffer size bpf.Open accepts
// (1 GiB).
const MaxRingBufferSize = 1 << 30

// DNSMaxPayload is the most DNS payload bytes the kernel captures per
// packet (DNS_MAX_PAYLOAD in bpf/flowtap.bpf.c): longer payloads are
// captured truncated and counted. The pcap replay cuts payloads to the
// same bound, so that it derives what the kernel would.
const DNSMaxPayload = 1232

// ValidateRingBufferSize reports whether size (bytes) is usable as the ring
// buffer size: a power of two, a multiple of the page size, and at most
// MaxRingBufferSize. 0 is not valid here; bpf.Open maps it to the default.
func ValidateRingBufferSize(size int) error {
	page := os.Getpagesize()
	switch {
	case size <= 0:
		return fmt.Errorf("invalid ring buffer size %d: must be positive", size)
	case size > MaxRingBufferSize:
		return fmt.Errorf("invalid ring buffer size %d: at most %d bytes (1 GiB) allowed", size, MaxRingBufferSize)
	case size%page != 0 || bits.OnesCount(uint(size)) != 1:
		return fmt.Errorf("invalid ring buffer size %d: must be a power of two multiple of the page size %d (e.g. %d)", size, page, nextRingSize(size, page))
	}
	return nil
}

// nextRingSize returns the smallest valid ring buffer size >= size.
func nextRingSize(size, page int) int {
	n := page
	for n < size && n < MaxRingBufferSize {
		n <<= 1
	}
	return n
}
