// SPDX-License-Identifier: Apache-2.0

// Package workload performs a known TCP workload and reports exactly what
// it did, so a test can hold flowtap's events against the truth.
//
// Two roles run in two processes, so that the process context flowtap
// attributes to each end of a connection can be checked: Serve owns the
// server side (listeners, and bound but closed ports that refuse
// connections), Run the client side (connections with data both ways,
// refused and timed-out attempts). Every connection and attempt Run makes is
// bounded in count and time and listed in its Report.
//
// The wire protocol between the two is minimal: the client sends a 16-byte
// header (request size, response size; big-endian uint64s) and that many
// request bytes; the server answers with the response size in bytes, waits
// for the client's FIN, and closes. Both byte counts are therefore known
// exactly: client→server = 16 + request size, server→client = response size.
package workload

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// HeaderSize is the size of the request header a client sends first.
const HeaderSize = 16

// maxMessage bounds the sizes a server accepts in a header, so a stray
// client cannot make it send or wait for gigabytes.
const maxMessage = 64 << 20

// Duration is a time.Duration that reads and writes JSON as "3s".
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// String implements flag.Value.
func (d *Duration) String() string { return time.Duration(*d).String() }

// Set implements flag.Value.
func (d *Duration) Set(s string) error {
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string like \"3s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Endpoint is an address a serve process holds, in the network namespace
// it was created in ("" = the process's own).
type Endpoint struct {
	Addr  netip.AddrPort `json:"addr"`
	Netns string         `json:"netns,omitempty"`
}

// ParseEndpoint parses "ADDR:PORT" or "ADDR:PORT@NETNS", where NETNS is a
// name under /run/netns or a path.
func ParseEndpoint(s string) (Endpoint, error) {
	addr, ns := s, ""
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		addr, ns = s[:i], s[i+1:]
		if ns == "" {
			return Endpoint{}, fmt.Errorf("endpoint %q: empty namespace after @", s)
		}
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return Endpoint{}, fmt.Errorf("endpoint %q: %w", s, err)
	}
	return Endpoint{Addr: ap, Netns: ns}, nil
}

// String renders the endpoint as ParseEndpoint reads it.
func (e Endpoint) String() string {
	if e.Netns == "" {
		return e.Addr.String()
	}
	return e.Addr.String() + "@" + e.Netns
}

// Process names a process as the kernel reports it.
type Process struct {
	PID int `json:"pid"`
	// Comm is /proc/<pid>/comm: at most 15 bytes.
	Comm string `json:"comm"`
}

// ServeInfo is the one JSON line a serve process prints once it listens.
type ServeInfo struct {
	Process
	// Listeners accept connections.
	Listeners []Endpoint `json:"listeners"`
	// Closed are bound but not listening: a SYN to one is refused (RST).
	// The serve process holds them so nothing else can listen there.
	Closed []Endpoint `json:"closed"`
}

// ServeSummary is the JSON line a serve process prints when it exits.
type ServeSummary struct {
	Served        int    `json:"served"`
	BytesReceived uint64 `json:"bytes_received"`
	BytesSent     uint64 `json:"bytes_sent"`
	Errors        int    `json:"errors"`
	FirstError    string `json:"first_error,omitempty"`
}

// Plan is what Run does. Counts are connections (or attempts) of each kind.
type Plan struct {
	// Servers are the listeners and closed ports to use, as a serve process
	// printed them. Nil: Run starts its own serve child process.
	Servers *ServeInfo `json:"servers,omitempty"`

	// IPv4: AF_INET socket, 127.0.0.1 → a 127.0.0.1 listener.
	IPv4 int `json:"ipv4"`
	// IPv6: AF_INET6 socket, ::1 → a ::1 listener.
	IPv6 int `json:"ipv6"`
	// IPv4Mapped: AF_INET6 socket (IPV6_V6ONLY off) → ::ffff:127.0.0.1,
	// the 127.0.0.1 listener; IPv4 on the wire.
	IPv4Mapped int `json:"ipv4_mapped"`
	// DualStackV4: AF_INET socket → 127.0.0.1 at the [::] listener, whose
	// accepted socket is AF_INET6 with a mapped address.
	DualStackV4 int `json:"dual_stack_v4"`
	// DualStackV6: AF_INET6 socket → ::1 at the [::] listener.
	DualStackV6 int `json:"dual_stack_v6"`
	// RefusedIPv4 and RefusedIPv6: attempts to a closed loopback port.
	RefusedIPv4 int `json:"refused_ipv4"`
	RefusedIPv6 int `json:"refused_ipv6"`

	// Netns: connections and attempts between two network namespaces.
	Netns NetnsPlan `json:"netns"`

	// ConnectTimeout bounds each connect; for timed-out attempts it is how
	// long the client waits (set it a little above flowtap's
	// --syn-timeout). Default 3s.
	ConnectTimeout Duration `json:"connect_timeout"`
	// IOTimeout bounds each connection's exchange. Default 10s.
	IOTimeout Duration `json:"io_timeout"`
	// Parallel is the number of connections in flight. Default 4.
	Parallel int `json:"parallel"`
	// MaxDuration bounds the whole run. Default 2m.
	MaxDuration Duration `json:"max_duration"`
}

// NetnsPlan describes the namespace part of a Plan. The client sockets are
// created in Client; the server's listener and closed port live in the
// namespace the ServeInfo names for them.
type NetnsPlan struct {
	// Client is the namespace (name under /run/netns, or a path) the client
	// sockets are created in.
	Client string `json:"client,omitempty"`
	// Server and ServerAddr say where Run's own serve child listens when
	// Plan.Servers is nil: ServerAddr (port 0) in namespace Server.
	Server     string     `json:"server,omitempty"`
	ServerAddr netip.Addr `json:"server_addr,omitzero"`
	// Conns connections with data both ways to the Server listener.
	Conns int `json:"conns"`
	// Refused attempts to the closed port in the server namespace.
	Refused int `json:"refused"`
	// TimeoutTarget is an address:port whose SYNs are silently dropped
	// inside the namespaces (nobody owns it; see Topology.DropAddr).
	TimeoutTarget netip.AddrPort `json:"timeout_target,omitzero"`
	// Timeouts attempts to TimeoutTarget, all in parallel.
	Timeouts int `json:"timeouts"`
}

// Kinds of connections and attempts, as Report records them.
const (
	KindIPv4        = "ipv4"
	KindIPv6        = "ipv6"
	KindIPv4Mapped  = "ipv4_mapped"
	KindDualStackV4 = "dual_stack_v4"
	KindDualStackV6 = "dual_stack_v6"
	KindNetns       = "netns"
)

// Expected reasons of failed attempts (flowtap's net_flow_tcp_failed reason).
const (
	ReasonRefused = "refused"
	ReasonTimeout = "timeout"
)

// Close styles of a client.
const (
	// CloseShutdown: the client shut down its sending side after the
	// response, read the server's FIN, then closed.
	CloseShutdown = "shutdown"
	// CloseFull: the client closed the socket right after the response;
	// the server's FIN reaches an orphaned socket.
	CloseFull = "close"
)

// Connection is one established connection. Client and Server are the
// addresses as they appear on the wire (IPv4-mapped IPv6 addresses are
// unmapped), Client being the initiator.
type Connection struct {
	Kind        string         `json:"kind"`
	Client      netip.AddrPort `json:"client"`
	Server      netip.AddrPort `json:"server"`
	ClientNetns string         `json:"client_netns,omitempty"`
	ServerNetns string         `json:"server_netns,omitempty"`
	// ClientFamily is the client socket's family: "inet" or "inet6".
	ClientFamily string `json:"client_family"`
	// BytesClientToServer and BytesServerToClient are TCP payload bytes.
	BytesClientToServer uint64 `json:"bytes_client_to_server"`
	BytesServerToClient uint64 `json:"bytes_server_to_client"`
	ClientPID           int    `json:"client_pid"`
	ClientComm          string `json:"client_comm"`
	ServerPID           int    `json:"server_pid"`
	ServerComm          string `json:"server_comm"`
	// ClientClose is CloseShutdown or CloseFull.
	ClientClose string `json:"client_close"`
	// Start and End are when the connect began and the client closed, ns
	// since the Unix epoch.
	Start int64 `json:"start"`
	End   int64 `json:"end"`
}

// Attempt is one connection attempt that never established.
type Attempt struct {
	Kind        string         `json:"kind"`
	Protocol    string         `json:"protocol"`
	Client      netip.AddrPort `json:"client"`
	Server      netip.AddrPort `json:"server"`
	ClientNetns string         `json:"client_netns,omitempty"`
	ServerNetns string         `json:"server_netns,omitempty"`
	// Reason is what flowtap should report: ReasonRefused or ReasonTimeout.
	Reason     string `json:"reason"`
	ClientPID  int    `json:"client_pid"`
	ClientComm string `json:"client_comm"`
	// ResponderLocal says the responder's side runs on this host (a closed
	// port on loopback or in a local namespace): the kernel there answered
	// the SYN. False when no host answered (timeouts).
	ResponderLocal bool `json:"responder_local"`
	// Error is what connect returned.
	Error string `json:"error"`
	Start int64  `json:"start"`
	End   int64  `json:"end"`
}

// Report is what Run did.
type Report struct {
	Client      Process      `json:"client"`
	Server      Process      `json:"server"`
	Started     int64        `json:"started"`
	Finished    int64        `json:"finished"`
	Connections []Connection `json:"connections"`
	Failed      []Attempt    `json:"failed"`
}

// sizes are the payload sizes connections cycle through: empty, tiny, one
// segment, a few segments, 64 KiB (one GSO super-packet) and some at or
// above 256 KiB.
var sizes = []uint64{0, 1, 100, 1448, 4096, 65536, 65537, 262144, 300007, 1 << 20}

// SizesFor returns the request and response size of the i-th connection of
// a run: every combination of small and large appears within a few dozen
// connections, in both directions.
func SizesFor(i int) (request, response uint64) {
	n := len(sizes)
	return sizes[i%n], sizes[(i*3+5)%n]
}
