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
// only flowtap package a sink needs to import.
package sdk

import (
	"context"
	"strings"

	"github.com/flowtap/flowtap/events"
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

// Context says which socket, cgroup and process an event belongs to. Zero
// values mean "not known". It is events.Context, re-exported so a sink needs
// no other import.
type Context = events.Context

// Workload is the container and pod of an event's socket
// (Context.Workload: nil while not known; an empty ContainerID for the
// host). It is events.Workload, re-exported.
type Workload = events.Workload

// Field is one named, typed value of an event.
type Field = events.Field

// Value is a typed field value: exactly the member that Kind names is set.
type Value = events.Value

// Kind is the type of a field value.
type Kind = events.Kind

// Field value kinds.
const (
	// KindInvalid marks a value whose type the host did not send.
	KindInvalid = events.KindInvalid
	// KindString: Value.Str is set.
	KindString = events.KindString
	// KindUint: Value.Uint is set.
	KindUint = events.KindUint
	// KindInt: Value.Int is set.
	KindInt = events.KindInt
	// KindBool: Value.Bool is set.
	KindBool = events.KindBool
	// KindStrings: Value.Strings is set, never nil (an empty list is []).
	KindStrings = events.KindStrings
)

// Event is one flowtap event as a sink receives it.
type Event struct {
	// Timestamp is nanoseconds since the Unix epoch (wall clock).
	Timestamp int64
	// ID is the catalogue ID of the event's definition.
	ID uint32
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
