// SPDX-License-Identifier: Apache-2.0

package derive

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
)

// Flow identifiers (flow_id).
//
// The tracker numbers the local endpoints whose flows it reports, and
// flow_id is that number passed through a bijection of 64-bit integers
// keyed by a random seed drawn when the tracker is created: 16 hex
// digits. Within one run no two endpoints can get the same flow_id (a
// bijection of a counter that does not wrap in practice); two runs use
// two unrelated keys, so their identifiers collide only by chance (for a
// billion flows in each of two runs, a chance of about 1 in 20 million).
// The tracker lives as long as flowtap runs and a config reload keeps it,
// so a flow begun before a reload ends after it with the same flow_id.
//
// Socket cookies were the other candidate: unique per boot, but an
// incoming flow's first records carry its listener's cookie (where the
// packet programs report it), a refused attempt against a closed port has
// no socket at all, and a replayed capture has no cookies; numbering in
// the tracker gives every flow event an identifier on every path.

// flowIDs hands out flow identifiers.
type flowIDs struct {
	key  uint64
	next uint64
}

// newFlowIDs returns a generator keyed by seed, or by a random key when
// seed is 0.
func newFlowIDs(seed uint64) flowIDs {
	if seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
		seed = binary.LittleEndian.Uint64(b[:])
	}
	return flowIDs{key: seed}
}

// id returns the next identifier.
func (g *flowIDs) id() string {
	g.next++
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], mix64(g.next^g.key))
	return hex.EncodeToString(b[:])
}

// mix64 is a bijection of 64-bit integers that spreads every input bit
// over the output (the finaliser of SplitMix64: each xor-shift and each
// multiplication by an odd constant can be undone).
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
