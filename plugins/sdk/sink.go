// SPDX-License-Identifier: Apache-2.0

// Package sdk is everything a flowtap sink plugin is written against.
//
// A sink is a separate program that receives batches of flowtap events from
// the flowtap host over gRPC (hashicorp/go-plugin). Its author implements
// Sink and calls Serve from main:
//
//	func main() { sdk.Serve(mysink.New()) }
//
// The host starts the program, configures the sink, writes batches to it and
// closes it; see Sink for the rules each side keeps. This package is the
// only flowtap package a sink needs to import, and its module
// (github.com/flowtap/flowtap/plugins/sdk) the only flowtap module: its
// types are its own, not flowtap's internal event model (README.md lists
// the stability promise).
package sdk

import (
	"context"
	"strings"

	"github.com/flowtap/flowtap/plugins/internal/wire"
)

// Sink is a destination for flowtap events. The host drives it through
// this lifecycle, and the SDK enforces the order even against a faulty host:
//
//   - Info may be called at any time, also while another method runs, and
//     should return constant values.
//   - Configure is called exactly once, before any Write. If it returns an
//     error the sink receives no Write; the host closes it.
//   - Write is called with one batch at a time, never concurrently with
//     itself, Configure or Close. A nil error acknowledges the whole batch;
//     an error means the sink did not accept it, and the host sends it
//     again later (after a backoff, a bounded number of times). Batches are
//     never empty. Delivery is at least once: if the plugin dies or hangs
//     before acknowledging a batch, the host restarts it (a new process,
//     Configure again) and resends the batch, which the sink may then see
//     twice.
//   - Close is called exactly once, last, also when Configure failed or was
//     never called; nothing is called after it. It flushes and releases
//     everything the sink holds.
//
// The batch passed to Write, its events, their fields and any string lists
// are only valid until Write returns: the SDK reuses their memory for the
// next batch. A sink that keeps an event beyond Write must copy those
// slices. Strings are immutable and stay valid: a sink may keep them as
// they are. A kept string value shares memory with the batch it came in
// (the SDK decodes without copying), so a sink keeping many for long
// should strings.Clone them; event and field names are shared across
// batches and cost nothing to keep.
//
// The contexts passed in are cancelled when the host gives up on the call
// (a deadline, or the host shutting down); a sink should return promptly
// then.
//
// A sink must not write to standard output before Serve has completed the
// handshake with the host: go-plugin reads the handshake from it. After the
// handshake, os.Stdout and os.Stderr are forwarded to the host, which is
// why a sink should look os.Stdout up when it writes, not keep the value it
// had at start-up. Diagnostics go to Logger, not to standard error.
type Sink interface {
	// Info names the sink.
	Info() Info
	// Configure validates and applies the sink's configuration, a JSON
	// object (possibly empty: "{}"). Return ConfigErrors (or a single
	// ConfigError) to report problems with particular keys; the host shows
	// them to the user key by key. Any other error is reported as is.
	Configure(ctx context.Context, config []byte) error
	// Write delivers one batch of events. See Sink for when the memory of
	// batch may be used.
	Write(ctx context.Context, batch []Event) error
	// Close flushes and releases everything the sink holds.
	Close(ctx context.Context) error
}

// Info names a sink.
type Info struct {
	// Name is the sink's short name, e.g. "stdout".
	Name string
	// Version is the sink's own version, free-form, e.g. "1.2.0".
	Version string
}

// ConfigError is one problem with one configuration key. It is an error,
// so a sink with a single problem may return it directly from Configure.
type ConfigError struct {
	// Key names the offending configuration key, e.g. "format". Empty
	// when the problem is not about one key (e.g. the JSON is malformed).
	Key string
	// Message says what is wrong and, where known, what would be right,
	// e.g. `unknown format "xml" (valid: json, table)`.
	Message string
}

// Error returns "key: message", or the message alone when Key is empty.
func (e ConfigError) Error() string {
	if e.Key == "" {
		return e.Message
	}
	return e.Key + ": " + e.Message
}

// ConfigErrors is a list of configuration problems, one per key. Configure
// returns it so the user sees every problem at once rather than one per run.
// The host receives the list intact and can unwrap it with errors.As.
type ConfigErrors []ConfigError

// Error joins the problems with "; ".
func (es ConfigErrors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Interface guards: both are errors a sink returns from Configure.
var (
	_ error = ConfigError{}
	_ error = ConfigErrors{}
)

// ID is the catalogue ID of an event's definition: flowtap's event IDs
// are 16 bits.
type ID uint16

// Context says which socket, cgroup and process an event belongs to. Zero
// values mean "not known".
type Context struct {
	// SocketCookie is the kernel's socket cookie: it identifies one
	// socket for the life of the host.
	SocketCookie uint64
	// CgroupID is the cgroup v2 id of the socket's cgroup.
	CgroupID uint64
	// PID, UID and Comm are the socket's owning process, its user and its
	// command name.
	PID  uint32
	UID  uint32
	Comm string
	// HostName names the host the event happened on.
	HostName string
	// PPID is the owner's parent process id; ProcessStart when the owner
	// process started (ns since the Unix epoch: PID and ProcessStart name
	// one process even after its pid is reused); Exe its executable's
	// path.
	PPID         uint32
	ProcessStart int64
	Exe          string
	// The workload the socket belongs to. Host is true for a socket of
	// no container; ContainerID is the full container id of a
	// container's. Both are empty while flowtap does not know yet (the
	// first events of a new cgroup). The other fields are what the
	// container runtime says, empty where it says nothing (no runtime
	// reachable, not a Kubernetes container).
	Host             bool
	ContainerID      string
	ContainerRuntime string
	ContainerName    string
	ContainerImage   string
	PodName          string
	PodNamespace     string
	PodUID           string
	// PodLabels are the selected pod labels (capture.workload.pod_labels)
	// as "key=value", sorted by key.
	PodLabels []string
}

// ShortID returns the first 12 digits of ContainerID, as docker and
// podman print it, or "".
func (c *Context) ShortID() string {
	if len(c.ContainerID) < 12 {
		return ""
	}
	return c.ContainerID[:12]
}

// Field is one named, typed value of an event.
type Field struct {
	Name  string
	Value Value
}

// Kind is the type of a field value.
type Kind uint8

// Field value kinds. Their numbers are the event encoding's kind codes.
const (
	// KindInvalid marks a value whose type the host did not send.
	KindInvalid Kind = wire.KindInvalid
	// KindString: Value.Str is set.
	KindString Kind = wire.KindString
	// KindUint: Value.Uint is set.
	KindUint Kind = wire.KindUint
	// KindInt: Value.Int is set.
	KindInt Kind = wire.KindInt
	// KindBool: Value.Bool is set.
	KindBool Kind = wire.KindBool
	// KindStrings: Value.Strings is set, never nil (an empty list is []).
	KindStrings Kind = wire.KindStrings
)

// Value is a typed field value: exactly the member that Kind names is set.
type Value struct {
	Kind    Kind
	Str     string
	Uint    uint64
	Int     int64
	Bool    bool
	Strings []string
}

// String returns a value of kind KindString.
func String(s string) Value { return Value{Kind: KindString, Str: s} }

// Uint returns a value of kind KindUint.
func Uint(u uint64) Value { return Value{Kind: KindUint, Uint: u} }

// Int returns a value of kind KindInt.
func Int(i int64) Value { return Value{Kind: KindInt, Int: i} }

// Bool returns a value of kind KindBool.
func Bool(b bool) Value { return Value{Kind: KindBool, Bool: b} }

// Strings returns a value of kind KindStrings; a nil list becomes an
// empty one.
func Strings(l []string) Value {
	if l == nil {
		l = []string{}
	}
	return Value{Kind: KindStrings, Strings: l}
}

// Event is one flowtap event as a sink receives it.
type Event struct {
	// Timestamp is nanoseconds since the Unix epoch (wall clock).
	Timestamp int64
	// ID is the catalogue ID of the event's definition.
	ID ID
	// Name is the catalogue name, e.g. "net_flow_tcp_begin".
	Name string
	// Context says where the event came from.
	Context Context
	// Fields are the event's own fields, in catalogue order.
	Fields []Field
}

// Field returns the value of the field called name, and whether the event
// has one.
func (e *Event) Field(name string) (Value, bool) {
	for i := range e.Fields {
		if e.Fields[i].Name == name {
			return e.Fields[i].Value, true
		}
	}
	return Value{}, false
}
