// SPDX-License-Identifier: Apache-2.0

package grpcopt

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	protobuf "google.golang.org/protobuf/proto"

	"github.com/flowtap/flowtap/plugins/internal/wire/proto"
)

// TestCodecBatch: the codec's Batch is standard protobuf both ways.
func TestCodecBatch(t *testing.T) {
	for _, b := range []*proto.Batch{
		{},
		{Seq: 1},
		{Events: []byte{1, 2, 3}},
		{Seq: 1 << 60, Events: bytes.Repeat([]byte("x"), 100_000)},
	} {
		data, err := Codec.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		want, err := protobuf.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if got := data.Materialize(); !bytes.Equal(got, want) {
			t.Errorf("Marshal(seq %d, %d bytes) differs from protobuf's", b.Seq, len(b.Events))
		}
		var back proto.Batch
		back.Seq, back.Events = 99, []byte("stale")
		if err := Codec.Unmarshal(data, &back); err != nil {
			t.Fatal(err)
		}
		data.Free()
		if back.Seq != b.Seq || !bytes.Equal(back.Events, b.Events) || cap(back.Events) != len(back.Events) {
			t.Errorf("Unmarshal = seq %d, %d bytes (cap %d), want seq %d, %d bytes", back.Seq, len(back.Events), cap(back.Events), b.Seq, len(b.Events))
		}
	}
}

// TestCodecUnmarshalUnknownFields: fields this version does not know are
// skipped; a repeated field's last value wins, as in protobuf.
func TestCodecUnmarshalUnknownFields(t *testing.T) {
	var raw []byte
	raw = protowire.AppendTag(raw, 9, protowire.BytesType)
	raw = protowire.AppendBytes(raw, []byte("future"))
	raw = protowire.AppendTag(raw, 1, protowire.VarintType)
	raw = protowire.AppendVarint(raw, 5)
	raw = protowire.AppendTag(raw, 2, protowire.BytesType)
	raw = protowire.AppendBytes(raw, []byte("old"))
	raw = protowire.AppendTag(raw, 10, protowire.Fixed64Type)
	raw = protowire.AppendFixed64(raw, 1)
	raw = protowire.AppendTag(raw, 2, protowire.BytesType)
	raw = protowire.AppendBytes(raw, []byte("new"))
	var b proto.Batch
	if err := Codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(raw)}, &b); err != nil {
		t.Fatal(err)
	}
	if b.Seq != 5 || string(b.Events) != "new" {
		t.Errorf("Unmarshal = seq %d, events %q", b.Seq, b.Events)
	}
	for _, bad := range [][]byte{{0x08}, {0x12, 5, 1}, {0xff}} {
		if err := Codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(bad)}, &b); err == nil {
			t.Errorf("Unmarshal(%x) succeeded", bad)
		}
	}
}

// TestCodecUnmarshalFresh: each Batch gets memory of its own, which later
// messages never overwrite (decoded strings point into it).
func TestCodecUnmarshalFresh(t *testing.T) {
	var b proto.Batch
	var kept [][]byte
	for _, s := range []string{"one", "two", "three"} {
		data, err := Codec.Marshal(&proto.Batch{Seq: 1, Events: []byte(s)})
		if err != nil {
			t.Fatal(err)
		}
		if err := Codec.Unmarshal(data, &b); err != nil {
			t.Fatal(err)
		}
		data.Free()
		kept = append(kept, b.Events)
	}
	for i, want := range []string{"one", "two", "three"} {
		if string(kept[i]) != want {
			t.Errorf("message %d now holds %q", i, kept[i])
		}
	}
}

// TestCodecOtherMessages: every other message goes through protobuf.
func TestCodecOtherMessages(t *testing.T) {
	data, err := Codec.Marshal(&proto.Ack{Seq: 3, Error: "x"})
	if err != nil {
		t.Fatal(err)
	}
	var a proto.Ack
	if err := Codec.Unmarshal(data, &a); err != nil || a.Seq != 3 || a.Error != "x" {
		t.Errorf("Ack round trip = %v, %v", &a, err)
	}
}

func TestPoolTiers(t *testing.T) {
	p := &pool{}
	for _, n := range []int{0, 1, 256, 257, 4096, 100_000, 1 << maxShift, 1<<maxShift + 1} {
		b := p.Get(n)
		if len(*b) != n {
			t.Errorf("Get(%d): len %d", n, len(*b))
		}
		if c := cap(*b); n <= 1<<maxShift && (c < n || c&(c-1) != 0) {
			t.Errorf("Get(%d): cap %d, want a power of two at least %d", n, c, n)
		}
		p.Put(b)
		// Buffers of no tier's size are dropped, not pooled.
		odd := make([]byte, 300)
		p.Put(&odd)
		if b := p.Get(300); cap(*b) == 300 {
			t.Error("a buffer of no tier's size was pooled")
		}
	}
}
