// SPDX-License-Identifier: Apache-2.0

// Package grpcopt holds the gRPC options both ends of the sink protocol
// use: the host's client (plugins/host) and the plugin's server
// (plugins/sdk).
package grpcopt

import (
	"fmt"
	"math/bits"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/flowtap/flowtap/plugins/internal/wire/proto"
)

// Buffer pool tiers: powers of two from 2^minShift to 2^maxShift bytes.
const (
	minShift = 8
	maxShift = 27 // 128 MiB, above wire.MaxBatchBytes
)

// pool is a gRPC buffer pool that does not zero the buffers it hands out,
// with a tier for every power of two.
//
// gRPC's default pool zeroes the whole capacity of every buffer it hands
// out, and its tiers jump from 32 KiB to 1 MiB: each message of a
// Write stream (typically 30 to 600 KiB) cost clearing a 1 MiB buffer
// on both sides, about a tenth of the CPU time of each. gRPC overwrites
// what it reads into and marshals into before using it, which is why
// gRPC itself has a non-zeroing variant (internal to it, hence this one).
type pool struct {
	tiers [maxShift - minShift + 1]sync.Pool
}

// tier returns the index of the smallest tier holding n bytes, or -1 when
// n is larger than the largest tier.
func tier(n int) int {
	if n <= 1<<minShift {
		return 0
	}
	shift := bits.Len(uint(n - 1))
	if shift > maxShift {
		return -1
	}
	return shift - minShift
}

// Get implements mem.BufferPool.
func (p *pool) Get(n int) *[]byte {
	t := tier(n)
	if t < 0 {
		b := make([]byte, n)
		return &b
	}
	if b, ok := p.tiers[t].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<(t+minShift))
	return &b
}

// Put implements mem.BufferPool. Buffers that are not of a tier's size
// (gRPC may hand back any buffer it got elsewhere) are left to the
// garbage collector.
func (p *pool) Put(b *[]byte) {
	c := cap(*b)
	t := tier(c)
	if t < 0 || c != 1<<(t+minShift) {
		return
	}
	p.tiers[t].Put(b)
}

// Interface guard: pool is a gRPC buffer pool.
var _ mem.BufferPool = (*pool)(nil)

// sharedPool serves every connection of the process.
var sharedPool = &pool{}

// Flow control windows of the plugin's side of the connection, which
// receives the batches: a message of the default size limit fits without
// waiting for a window update, and a few in flight nearly do. Fixed
// windows turn off gRPC's bandwidth-delay estimation, whose windows start
// at 64 KiB, below one typical message. The host keeps gRPC's defaults
// for what it receives (acks and the plugin's stdout and stderr, where a
// small window is the back-pressure on a plugin printing faster than the
// host's stdout takes it).
const (
	windowSize     = 4 << 20
	connWindowSize = 16 << 20
)

// DialOptions are the options of the host's connection to a plugin.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{experimental.WithBufferPool(sharedPool)}
}

// ServerOptions are the options of a plugin's gRPC server; maxRecv is
// the largest message it accepts.
func ServerOptions(maxRecv int) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxRecv),
		grpc.ForceServerCodecV2(Codec),
		experimental.BufferPool(sharedPool),
		grpc.InitialWindowSize(windowSize),
		grpc.InitialConnWindowSize(connWindowSize),
	}
}

// Codec is the gRPC codec of the sink protocol: standard protobuf, on
// the wire and for every message but proto.Batch, which it marshals and
// unmarshals itself to spare the events a copy each way:
//
//   - Marshal copies the events once, into a buffer from the pool, where
//     the generic codec would compute the size, take a zeroed buffer and
//     copy;
//   - Unmarshal copies the message once, into memory of its own that the
//     Batch's Events then alias, where the generic codec would copy it
//     into a pooled buffer and again into the Events field. The decoded
//     strings point into that memory, so it must be fresh for every
//     message: it is never pooled.
//
// The host sets it on its Write streams (grpc.ForceCodecV2), the plugin on
// its server (grpc.ForceServerCodecV2). Name is "proto", so the wire
// says what it carries: standard protobuf.
var Codec encoding.CodecV2 = codec{}

type codec struct{}

// protoCodec is gRPC's own protobuf codec.
var protoCodec = encoding.GetCodecV2(grpcproto.Name)

func (codec) Name() string { return grpcproto.Name }

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(*proto.Batch)
	if !ok {
		return protoCodec.Marshal(v)
	}
	seq, events := b.GetSeq(), b.GetEvents()
	size := 0
	if seq != 0 {
		size += 1 + protowire.SizeVarint(seq)
	}
	if len(events) > 0 {
		size += 1 + protowire.SizeBytes(len(events))
	}
	buf := sharedPool.Get(size)
	out := (*buf)[:0]
	if seq != 0 {
		out = protowire.AppendTag(out, batchSeq, protowire.VarintType)
		out = protowire.AppendVarint(out, seq)
	}
	if len(events) > 0 {
		out = protowire.AppendTag(out, batchEvents, protowire.BytesType)
		out = protowire.AppendBytes(out, events)
	}
	*buf = out
	return mem.BufferSlice{mem.NewBuffer(buf, sharedPool)}, nil
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	b, ok := v.(*proto.Batch)
	if !ok {
		return protoCodec.Unmarshal(data, v)
	}
	buf := make([]byte, data.Len())
	data.CopyTo(buf)
	b.Reset()
	for len(buf) > 0 {
		num, typ, n := protowire.ConsumeTag(buf)
		if n < 0 {
			return fmt.Errorf("unmarshal Batch: %w", protowire.ParseError(n))
		}
		buf = buf[n:]
		switch {
		case num == batchSeq && typ == protowire.VarintType:
			b.Seq, n = protowire.ConsumeVarint(buf)
		case num == batchEvents && typ == protowire.BytesType:
			var events []byte
			events, n = protowire.ConsumeBytes(buf)
			b.Events = events[:len(events):len(events)]
		default:
			n = protowire.ConsumeFieldValue(num, typ, buf)
		}
		if n < 0 {
			return fmt.Errorf("unmarshal Batch: field %d: %w", num, protowire.ParseError(n))
		}
		buf = buf[n:]
	}
	return nil
}

// Field numbers of proto.Batch.
const (
	batchSeq    protowire.Number = 1
	batchEvents protowire.Number = 2
)
