// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

// flowtap kernel side.
//
//   - A sock_ops program follows the cgroup's TCP sockets from connect()
//     or accept() to close: it writes the flow's moments (the SYN a
//     connect() sends, the SYN-ACK it gets or a listener sends, the SYN a
//     listener gets, the reset a refused connect() gets) as packet
//     records, and the socket's close with its final counters; it and
//     cgroup/connect4/6 record the owner (the task calling listen() or
//     connect()). No per-packet program runs for flows.
//   - A tp_btf program on tcp:tcp_send_reset reports packets no socket
//     took that the kernel answers with a reset (refused attempts).
//   - cgroup_skb programs, attached only when a selected event needs
//     packets: flowtap_ingress/egress report every flow-relevant packet
//     (SYN or RST set; FIN only for sockets sock_ops does not follow), and
//     the sock_ops program then leaves the flow's moments to them;
//     flowtap_dns_ingress/egress capture DNS payloads. Other packets cost
//     only the header reads. They never drop traffic.
//   - a tp_btf program on sock:inet_sock_set_state (with the packet
//     programs) records the owner on SYN_SENT and LISTEN host-wide, and
//     reports closed sockets the sock_ops program does not follow (those
//     that existed before flowtap started).
//   - BPF iterators walk existing sockets: task_file (owners of sockets
//     that existed before flowtap started), tcp (applying those owners;
//     owners of MPTCP subflows; snapshots of every counted socket).
//
// All records are one fixed-size struct in one BPF ring buffer.

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

char __license[] SEC("license") = "Dual BSD/GPL";

// Values of flow_record.type.
#define FLOW_REC_PACKET 1   // a flow-relevant packet (cgroup_skb)
#define FLOW_REC_CLOSED 2   // a socket entered TCP_CLOSE (tp_btf)
#define FLOW_REC_SNAPSHOT 3 // a counted socket, on request (iter/tcp)
#define FLOW_REC_NOSOCK 4   // a packet no socket took, reset by the kernel (tp_btf)

// Values of flow_record.direction (packet records only).
#define FLOW_DIR_INGRESS 1
#define FLOW_DIR_EGRESS 2

// Address families as the socket API numbers them (the uapi headers do not
// define AF_*).
#define FLOW_AF_INET 2
#define FLOW_AF_INET6 10

#define FLOW_SOCK_STREAM 1
#define FLOW_PF_KTHREAD 0x00200000
#define FLOW_S_IFMT 00170000
#define FLOW_S_IFSOCK 0140000
#define FLOW_IPPROTO_MPTCP 262

// TCP states (include/net/tcp_states.h).
#define FLOW_TCP_SYN_SENT 2
#define FLOW_TCP_FIN_WAIT1 4
#define FLOW_TCP_FIN_WAIT2 5
#define FLOW_TCP_CLOSE 7
#define FLOW_TCP_LAST_ACK 9
#define FLOW_TCP_LISTEN 10
#define FLOW_TCP_CLOSING 11

// Sockets the start-up walk can record owners for (start_owners).
#define START_OWNERS_MAX (1 << 18)
#define LISTEN_OWNERS_MAX (1 << 16)

// TCP flags byte (offset 13 of the TCP header).
#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10
#define TCP_FLOW_FLAGS (TCP_FLAG_FIN | TCP_FLAG_SYN | TCP_FLAG_RST)

// IPv4 fragment offset / more-fragments bits of iphdr.frag_off (host order).
#define IP4_OFFSET_MASK 0x1fff

// IPv6 extension headers walked before TCP.
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_AUTH 51
#define NEXTHDR_DEST 60
#define IPV6_MAX_EXT_HEADERS 6
// Fragment offset bits of the fragment header's frag_off (host order).
#define IP6_OFFSET_MASK 0xfff8

// Minimal kernel types, relocated with CO-RE against the running kernel's
// BTF: only the members used here, with the kernel's names. Nothing here
// depends on the layout of the kernel that compiled this file.
struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
	struct {
		void *net;
	} skc_net;
	unsigned long skc_flags; // sk_flags since Linux 6.13
	struct {
		__s64 counter;
	} skc_cookie;
} __attribute__((preserve_access_index));

struct kernfs_node {
	__u64 id;
} __attribute__((preserve_access_index));

struct cgroup {
	struct kernfs_node *kn;
} __attribute__((preserve_access_index));

struct sock_cgroup_data {
	struct cgroup *cgroup;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
	__u16 sk_type;
	int sk_err;
	unsigned long sk_flags; // before Linux 6.13
	struct sock_cgroup_data sk_cgrp_data;
} __attribute__((preserve_access_index));

// The local port is read from inet_sport: skc_num is already 0 when a
// socket enters TCP_CLOSE (tcp_set_state releases the port binding first).
struct inet_sock {
	struct sock sk;
	__be16 inet_sport;
} __attribute__((preserve_access_index));

struct file;

struct socket {
	struct sock *sk;
	struct file *file;
} __attribute__((preserve_access_index));

struct inode {
	unsigned short i_mode;
} __attribute__((preserve_access_index));

struct file {
	struct inode *f_inode;
	void *private_data;
} __attribute__((preserve_access_index));

struct cred {
	struct {
		__u32 val;
	} uid;
} __attribute__((preserve_access_index));

struct task_struct {
	unsigned int flags;
	int tgid;
	const struct cred *cred;
	char comm[16];
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	__u64 start_boottime; // since Linux 5.5
} __attribute__((preserve_access_index));

struct inet_connection_sock {
	struct inet_sock icsk_inet;
	void *icsk_ulp_data;
} __attribute__((preserve_access_index));

struct tcp_sock {
	struct inet_connection_sock inet_conn;
	_Bool is_mptcp;
	__u8 bpf_sock_ops_cb_flags;
	__u32 segs_in;
	__u32 segs_out;
	__u32 rcv_nxt;
	__u32 snd_una;
	__u32 write_seq;
	__u64 bytes_received;
	__u64 bytes_acked;
} __attribute__((preserve_access_index));

struct mptcp_subflow_context {
	struct sock *conn;
} __attribute__((preserve_access_index));

// The packet of a tcp_send_reset tracepoint: headers at head + offsets.
struct sk_buff {
	unsigned char *head;
	__u16 transport_header;
	__u16 network_header;
} __attribute__((preserve_access_index));

struct mptcp_sock;

struct bpf_iter_meta;

struct bpf_iter__task_file {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
	__u32 fd;
	struct file *file;
} __attribute__((preserve_access_index));

struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
	__u32 uid;
} __attribute__((preserve_access_index));

// One record per flow-relevant packet, closed socket or snapshot. The
// layout is fixed and padded explicitly so that C and the bpf2go-generated
// Go struct agree byte for byte (128 bytes, 8-byte aligned). Ports are in
// host byte order; addresses in network byte order, IPv4 in the first 4
// bytes. Packet records carry source/destination as on the wire; socket
// records (closed, snapshot) carry local/remote of the socket in saddr/sport
// and daddr/dport.
struct flow_record {
	__u64 ts_ns;     // bpf_ktime_get_boot_ns (CLOCK_BOOTTIME)
	__u64 cookie;    // socket cookie
	__u64 cgroup_id; // cgroup v2 id of the socket (0 if not known)
	__u64 bytes_sent; // the socket's counters (TCP payload bytes, segments)
	__u64 bytes_received;
	__u64 packets_sent;
	__u64 packets_received;
	__u8 saddr[16];
	__u8 daddr[16];
	__u8 comm[16]; // owner's task name, NUL-padded (zeros if not known)
	__u32 pid;     // owner's process id (tgid; 0 if not known)
	__u32 uid;     // owner's user id
	__u32 len;     // packet records: skb->len (IP packet length)
	__u16 sport;
	__u16 dport;
	__u16 family;   // FLOW_AF_INET or FLOW_AF_INET6
	__u8 type;      // FLOW_REC_*
	__u8 direction; // packet records: FLOW_DIR_*; 0 otherwise
	__u8 tcp_flags; // packet records: TCP flags byte; 0 otherwise
	__u8 state;     // TCP state: now, or before TCP_CLOSE for closed records
	__u8 pad[2];
	__u64 start_ns; // owner process's start, CLOCK_BOOTTIME ns (0 if not known)
	__u32 ppid;     // owner's parent process id (0 if not known)
	__u32 pad2;
};

// Per-socket mark: "flowtap counts this socket". The counters themselves
// are the kernel's own (tcp_sock: bytes_acked, bytes_received, segs_out,
// segs_in); the mark keeps what is needed to turn them into payload bytes:
// the sequence numbers of the FINs the socket sent and received (each FIN
// takes one sequence number, which the kernel's byte counters include once
// it is acknowledged / received in order). Set by the cgroup_skb programs
// on a flow-relevant packet (SYN, FIN, RST) of a non-listening socket and
// by sock_ops when a connection is accepted. A listener's mark is never
// set, so an accepted socket, which is cloned from its listener, starts
// unmarked.
struct sock_mark {
	__u64 cgroup_id;   // cgroup v2 id of the socket
	__u32 fin_out_seq; // sequence number of the FIN the socket sent
	__u32 fin_in_seq;  // sequence number of the FIN it received
	__u8 counted;      // the mark is set: the socket's close is reported
	__u8 fin_out;      // fin_out_seq is set
	__u8 fin_in;       // fin_in_seq is set
	__u8 closed;       // the closed record was written
	__u8 syn_out;      // the socket sent the SYN (it connected)
	__u8 followed;     // sock_ops reports its state changes (see handle_flow)
	__u8 pad[2];
};

// The kernel's TCP counters of one socket, read from one of the three
// places that have them (struct bpf_tcp_sock, struct bpf_sock_ops, struct
// tcp_sock).
struct tcp_counters {
	__u64 bytes_acked;
	__u64 bytes_received;
	__u32 segs_out;
	__u32 segs_in;
	__u32 snd_una;
	__u32 rcv_nxt;
};

// The process a socket belongs to (pid 0: not known), with its start
// and parent (0: not known), which only programs that can read the task
// fill: current_owner, the tp_btf program, the start-up walk.
struct sock_owner {
	__u32 pid;
	__u32 uid;
	__u8 comm[16];
	__u64 start_ns; // the process's start (its group leader's), CLOCK_BOOTTIME
	__u32 ppid;
	__u32 pad;
};

// Everything flowtap keeps per socket, in one socket-local storage: one
// allocation per socket, one lookup per program run. The kernel clones it
// to accepted children (BPF_F_CLONE), so an accepted socket inherits its
// listener's owner; the listener's mark is never set.
struct sock_state {
	struct sock_owner owner;
	struct sock_mark mark;
};

// The ring buffer size is a default; the Go loader overrides max_entries
// before loading. The value type only annotates the map for bpf2go (it
// generates the Go struct from it); the loader drops it before creating the
// map, since ring buffers have no value size.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 32 << 20);
	__type(value, struct flow_record);
} flow_records SEC(".maps");

// Records that could not be reserved in the ring buffer (it was full).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost_records SEC(".maps");

// No-socket resets seen by flowtap_reset (written or lost): the program is
// host-wide, so a test that accounts for every record of a scoped capture
// needs its count.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} nosock_resets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct sock_state);
} sock_states SEC(".maps");

// Owners of the TCP and MPTCP sockets that existed when flowtap started,
// by the socket's kernel address (struct sock *). The start-up walk of task
// files (flowtap_files) fills it: there the socket is reached through
// bpf_sock_from_file(file)->sk, a pointer some kernels' verifiers do not
// trust for socket-local storage, so the walk only records the owner under
// the address. Programs that hold a trusted pointer to the socket apply it
// to the socket's storage and delete the entry: the walk of this network
// namespace's TCP sockets at start-up (flowtap_owners, flowtap_subflows),
// and, for sockets of other network namespaces, the packet programs on the
// socket's first flow-relevant packet (packet_owner) and the state
// program when the socket closes unseen. Entries are deleted once applied,
// so an address the kernel reuses for a new socket cannot inherit a stale
// owner through it (new sockets get their owner at connect() or listen()).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, START_OWNERS_MAX);
	__type(key, __u64);
	__type(value, struct sock_owner);
} start_owners SEC(".maps");

// Owners of the listening sockets that existed when flowtap started, by
// network namespace and port, filled by flowtap_files with start_owners.
// An accepted socket is cloned from its listener with the listener's
// storage, owner included; a listener of another network namespace,
// which the start-up walk of TCP sockets does not reach, has none, and
// its accepted sockets get their owner here (sock_ops, passive
// established). A listener created after start has its own owner, which
// its children inherit: they never look here.
struct listen_key {
	__u64 net; // struct net * of the listener's network namespace
	__u32 port;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, LISTEN_OWNERS_MAX);
	__type(key, struct listen_key);
	__type(value, struct sock_owner);
} listen_owners SEC(".maps");

struct ipv6_ext {
	__u8 nexthdr;
	__u8 hdrlen;
	__be16 frag_off; // only meaningful for the fragment header
};

// The part of the TCP header the programs read: ports to flags.
struct tcp_head {
	__be16 source;
	__be16 dest;
	__be32 seq;
	__be32 ack_seq;
	__u8 doff_res; // data offset in the high nibble
	__u8 flags;
};

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&lost_records, &zero);

	if (lost)
		__sync_fetch_and_add(lost, 1);
}

// Wake the reader when the ring holds wakeup_bytes (or 1/8 of a smaller
// ring), and at most once per wakeup_quiet_ns otherwise; the reader finds
// the records in between on its next timed poll. Waking for every record
// cost the reader an epoll round trip per record. The rate-limited wake-up
// lets an idle reader sleep long (Run polls every ringPollInterval only
// while records keep coming, see capture.go): the first record after a
// quiet spell wakes it at once. The loader sets it to capture.go's
// wakeupBytes, which the reader waits for between drains of a busy ring.
volatile const __u64 wakeup_bytes = 1 << 20;

// The quiet spell after which a record wakes the reader (ns); the loader
// sets it to capture.go's ringPollInterval.
volatile const __u64 wakeup_quiet_ns = 25 * 1000 * 1000ULL;

// When a program last woke the reader for the rate limit (CLOCK_BOOTTIME
// ns). CPUs race on it harmlessly: at worst one more wake-up.
static volatile __u64 last_wakeup_ns;

static __always_inline __u64 wakeup_flags(__u64 now)
{
	__u64 avail = bpf_ringbuf_query(&flow_records, BPF_RB_AVAIL_DATA);
	__u64 thresh = bpf_ringbuf_query(&flow_records, BPF_RB_RING_SIZE) >> 3;

	if (thresh > wakeup_bytes)
		thresh = wakeup_bytes;
	if (avail >= thresh)
		return BPF_RB_FORCE_WAKEUP;
	if (now - last_wakeup_ns >= wakeup_quiet_ns) {
		last_wakeup_ns = now;
		return BPF_RB_FORCE_WAKEUP;
	}
	return BPF_RB_NO_WAKEUP;
}

static __always_inline void submit_record(struct flow_record *rec)
{
	bpf_ringbuf_submit(rec, wakeup_flags(rec->ts_ns));
}

static __always_inline void copy_owner(struct flow_record *rec, const struct sock_owner *o)
{
	if (!o)
		return;
	rec->pid = o->pid;
	rec->uid = o->uid;
	__builtin_memcpy(rec->comm, o->comm, sizeof(rec->comm));
	rec->start_ns = o->start_ns;
	rec->ppid = o->ppid;
}

// copy_counters fills the record's counters from the kernel's: payload
// bytes acknowledged by the peer and received in order, segments out and
// in. bytes_acked and bytes_received count sequence numbers, so a FIN
// counts one once the peer acknowledged it (sent) or once it was received
// in order (received): the FIN's own sequence number, kept in the mark, is
// below snd_una / rcv_nxt exactly then, and is taken off. The connecting
// side's bytes_acked also counts its SYN once the SYN-ACK acknowledged it
// (bytes_acked > 0); no other SYN is in the counters (measured, see
// README.md, "Counters").
static __always_inline void copy_counters(struct flow_record *rec, const struct sock_mark *c,
					  const struct tcp_counters *k)
{
	__u64 sent = k->bytes_acked, recv = k->bytes_received;

	if (c->fin_out && (__s32)(k->snd_una - c->fin_out_seq) > 0 && sent)
		sent--;
	if (c->syn_out && sent)
		sent--;
	if (c->fin_in && (__s32)(k->rcv_nxt - c->fin_in_seq) > 0 && recv)
		recv--;
	rec->cgroup_id = c->cgroup_id;
	rec->bytes_sent = sent;
	rec->bytes_received = recv;
	rec->packets_sent = k->segs_out;
	rec->packets_received = k->segs_in;
}

// core_counters reads the counters of a tcp_sock (direct loads through
// its BTF pointer, relocated with CO-RE).
static __always_inline void core_counters(struct tcp_sock *tp, struct tcp_counters *k)
{
	k->bytes_acked = tp->bytes_acked;
	k->bytes_received = tp->bytes_received;
	k->segs_out = tp->segs_out;
	k->segs_in = tp->segs_in;
	k->snd_una = tp->snd_una;
	k->rcv_nxt = tp->rcv_nxt;
}

// Largest header offset read directly from the packet's linear data.
#define MAX_DIRECT_OFF 512

// load_header copies len bytes at offset off of the packet to `to`: straight
// from the linear data when it holds them (TCP/IP headers nearly always
// are), else with bpf_skb_load_bytes. A load instead of a helper call keeps
// the per-packet cost down.
static __always_inline int load_header(struct __sk_buff *skb, __u32 off, void *to, const __u32 len)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	if (off <= MAX_DIRECT_OFF && data + off + len <= data_end) {
		__builtin_memcpy(to, data + off, len);
		return 0;
	}
	return bpf_skb_load_bytes(skb, off, to, len);
}

// parse_ipv6 returns the offset of the TCP or UDP header, or -1 if the
// packet is not (the first fragment of) an IPv6 TCP or UDP packet. ip6
// receives the header, proto the transport protocol.
static __always_inline int parse_ipv6(struct __sk_buff *skb, struct ipv6hdr *ip6, __u8 *proto)
{
	struct ipv6_ext ext;
	__u32 off = sizeof(*ip6);
	__u8 nexthdr;
	int i;

	if (load_header(skb, 0, ip6, sizeof(*ip6)) < 0)
		return -1;
	if (ip6->version != 6)
		return -1;
	nexthdr = ip6->nexthdr;

	// Unrolled on purpose: kernel 6.18's verifier failed with EFAULT
	// ("verifier bug") on the equivalent bounded loop when the loader
	// lacked CAP_PERFMON; the unrolled form verifies either way.
#pragma unroll
	for (i = 0; i < IPV6_MAX_EXT_HEADERS; i++) {
		switch (nexthdr) {
		case IPPROTO_TCP:
		case IPPROTO_UDP:
			*proto = nexthdr;
			return off;
		case NEXTHDR_HOP:
		case NEXTHDR_ROUTING:
		case NEXTHDR_DEST:
			if (bpf_skb_load_bytes(skb, off, &ext, sizeof(ext)) < 0)
				return -1;
			nexthdr = ext.nexthdr;
			off += ((__u32)ext.hdrlen + 1) * 8;
			break;
		case NEXTHDR_AUTH:
			if (bpf_skb_load_bytes(skb, off, &ext, sizeof(ext)) < 0)
				return -1;
			nexthdr = ext.nexthdr;
			off += ((__u32)ext.hdrlen + 2) * 4;
			break;
		case NEXTHDR_FRAGMENT:
			if (bpf_skb_load_bytes(skb, off, &ext, sizeof(ext)) < 0)
				return -1;
			// Only the first fragment carries the TCP header.
			if (bpf_ntohs(ext.frag_off) & IP6_OFFSET_MASK)
				return -1;
			nexthdr = ext.nexthdr;
			off += 8;
			break;
		default:
			return -1;
		}
	}
	if (nexthdr != IPPROTO_TCP && nexthdr != IPPROTO_UDP)
		return -1;
	*proto = nexthdr;
	return off;
}

// parse_ipv4 returns the offset of the TCP or UDP header, or -1 if the
// packet is not (the first fragment of) an IPv4 TCP or UDP packet. ip4
// receives the header, proto the transport protocol.
static __always_inline int parse_ipv4(struct __sk_buff *skb, struct iphdr *ip4, __u8 *proto)
{
	if (load_header(skb, 0, ip4, sizeof(*ip4)) < 0)
		return -1;
	if (ip4->version != 4 || ip4->ihl < 5)
		return -1;
	if (ip4->protocol != IPPROTO_TCP && ip4->protocol != IPPROTO_UDP)
		return -1;
	if (bpf_ntohs(ip4->frag_off) & IP4_OFFSET_MASK)
		return -1;
	*proto = ip4->protocol;
	return ip4->ihl * 4;
}

// A packet as the cgroup_skb programs parse it, once, for the flow and the
// DNS paths.
struct pkt {
	union {
		struct iphdr v4;
		struct ipv6hdr v6;
	} ip;
	struct tcp_head tcp; // TCP: ports to flags; UDP: only the ports are read
	__u32 off;           // offset of the TCP or UDP header
	__u16 family;        // FLOW_AF_INET or FLOW_AF_INET6
	__u8 proto;          // IPPROTO_TCP or IPPROTO_UDP
};

// parse_packet fills p from an IPv4 or IPv6 TCP or UDP packet, walking
// IPv6 extension headers; it returns -1 for anything else.
static __always_inline int parse_packet(struct __sk_buff *skb, struct pkt *p, const int tcp_flags)
{
	int off;

	switch (skb->protocol) {
	case bpf_htons(ETH_P_IP):
		p->family = FLOW_AF_INET;
		off = parse_ipv4(skb, &p->ip.v4, &p->proto);
		break;
	case bpf_htons(ETH_P_IPV6):
		p->family = FLOW_AF_INET6;
		off = parse_ipv6(skb, &p->ip.v6, &p->proto);
		break;
	default:
		return -1;
	}
	if (off < 0)
		return -1;
	p->off = off;
	if (tcp_flags && p->proto == IPPROTO_TCP)
		return load_header(skb, off, &p->tcp, sizeof(p->tcp));
	// UDP and TCP headers both start with the ports.
	return load_header(skb, off, &p->tcp, 4);
}

// socket_flows is set by the loader unless the packet programs record the
// flow packets themselves (flowtap_ingress/egress, attached when
// net_packet_flow_base is selected by name): then the sock_ops program
// writes the flow's moments as packet records, without a per-packet hook.
// A connect() is the SYN it sends, the active established callback the
// SYN-ACK it got, a listener's new request socket the SYN it got, the
// passive established callback the SYN-ACK it sent; a refused connect()
// is the reset it got. The records carry what the packet programs' would
// (addresses and ports as on the wire, the socket's cookie, owner and
// cgroup), and no packet length.
volatile const __u8 socket_flows = 1;

#define FLOW_ECONNREFUSED 111
// enum sock_flags: SOCK_DONE, set when the peer's FIN was received in
// order (tcp_fin).
#define FLOW_SOCK_DONE 1

// mptcp_enabled is set by the loader when the kernel has
// bpf_skc_to_mptcp_sock (Linux 5.19): with it 0 the verifier prunes the
// MPTCP path, so the packet programs load on older kernels too.
volatile const __u8 mptcp_enabled = 0;

// start_owner applies the owner the start-up walk recorded for the socket
// at address key, if any, to its state (created if st is NULL), and
// forgets the entry. It returns the owner, or NULL.
static __always_inline struct sock_owner *start_owner(void *sk, __u64 key, struct sock_state *st)
{
	struct sock_owner *o = bpf_map_lookup_elem(&start_owners, &key);

	if (!o)
		return NULL;
	if (!st)
		st = bpf_sk_storage_get(&sock_states, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return NULL;
	st->owner = *o;
	bpf_map_delete_elem(&start_owners, &key);
	return &st->owner;
}

// packet_owner returns the owner of the socket a packet belongs to, given
// its state st if already looked up (else NULL). A socket without an owner
// of its own gets the one the start-up walk recorded for it (a socket of
// another network namespace that existed before flowtap started: the walk
// of TCP sockets only sees flowtap's own). An MPTCP subflow without an
// owner (one a kernel worker created, or the TCP listener of an MPTCP
// listening socket that existed before flowtap started) gets its MPTCP
// socket's owner, stored on the subflow so that children cloned from it
// (accepted sockets) inherit it.
static __always_inline struct sock_owner *packet_owner(struct bpf_sock *sk, struct sock_state *st)
{
	struct sock_owner *o;
	struct sock_state *ms;
	struct mptcp_sock *msk;

	if (!st)
		st = bpf_sk_storage_get(&sock_states, sk, 0, 0);
	if (st && st->owner.pid)
		return &st->owner;
	// The socket's kernel address is the key; a pointer used as plain
	// data needs CAP_PERFMON, which loading the tracing programs needs
	// anyway.
	o = start_owner(sk, (__u64)sk, st);
	if (o)
		return o;
	// Only a TCP stream socket can be an MPTCP subflow. The kernel's
	// own per-CPU control socket, which sends the resets and ACKs no
	// socket of their own sends (a SOCK_RAW socket of protocol TCP),
	// must not get here: Linux 6.1's bpf_skc_to_mptcp_sock checks the
	// protocol alone, reads tcp_sock.is_mptcp past the end of that
	// smaller socket, and may follow garbage (a kernel oops, seen on
	// 6.1.176 under the kernel matrix).
	if (!mptcp_enabled || sk->protocol != IPPROTO_TCP || sk->type != FLOW_SOCK_STREAM)
		return st ? &st->owner : NULL;
	msk = bpf_skc_to_mptcp_sock(sk);
	if (!msk)
		return st ? &st->owner : NULL;
	// The MPTCP socket's owner: set when it connected or listened, or
	// recorded by the start-up walk (the socket of another network
	// namespace, which only the walk of task files sees).
	ms = bpf_sk_storage_get(&sock_states, msk, 0, 0);
	if (ms && ms->owner.pid)
		o = &ms->owner;
	else
		o = start_owner(msk, (__u64)msk, ms);
	if (!o)
		return st ? &st->owner : NULL;
	if (!st)
		st = bpf_sk_storage_get(&sock_states, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return o;
	st->owner = *o;
	return &st->owner;
}

// handle_flow handles a TCP packet: a record for SYN, RST and the FINs of
// sockets sock_ops does not follow, the socket's mark for all three.
static __always_inline int handle_flow(struct __sk_buff *skb, __u8 direction, const struct pkt *p)
{
	const struct tcp_head *tcp = &p->tcp;
	struct bpf_sock *sk;
	struct bpf_tcp_sock *tp;
	struct sock_state *st = NULL;
	struct sock_mark *cnt = NULL;
	struct flow_record *rec;
	struct tcp_counters k;

	// Data packets cost only the header reads: the counters are the
	// kernel's own.
	if (!(tcp->flags & TCP_FLOW_FLAGS))
		return 1;

	// The mark of a full TCP stream socket: created on its first
	// flow-relevant packet unless it listens (its SYNs belong to no
	// connection yet) or is closed already.
	sk = skb->sk;
	if (sk)
		sk = bpf_sk_fullsock(sk);
	if (sk && sk->protocol == IPPROTO_TCP && sk->type == FLOW_SOCK_STREAM) {
		__u64 flags = BPF_SK_STORAGE_GET_F_CREATE;

		if (sk->state == FLOW_TCP_LISTEN || sk->state == FLOW_TCP_CLOSE)
			flags = 0;
		st = bpf_sk_storage_get(&sock_states, sk, 0, flags);
		if (st && !st->mark.counted && flags)
			st->mark.counted = 1;
		if (st && st->mark.counted)
			cnt = &st->mark;
	}
	if (cnt) {
		if (!cnt->cgroup_id)
			cnt->cgroup_id = bpf_skb_cgroup_id(skb);
		if (direction == FLOW_DIR_EGRESS && (tcp->flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN)
			cnt->syn_out = 1;
		if (tcp->flags & TCP_FLAG_FIN) {
			// The FIN's sequence number: after the segment's payload.
			__u32 hdrs = p->off + (__u32)(tcp->doff_res >> 4) * 4;
			__u32 seq = bpf_ntohl(tcp->seq) + (skb->len > hdrs ? skb->len - hdrs : 0);

			if (direction == FLOW_DIR_EGRESS) {
				cnt->fin_out_seq = seq;
				cnt->fin_out = 1;
			} else {
				cnt->fin_in_seq = seq;
				cnt->fin_in = 1;
			}
		}
		// A FIN of a socket whose state changes sock_ops reports needs
		// no record: its end comes, certainly, as the closed record,
		// and the FIN's sequence number is kept above. SYNs (attempts,
		// handshakes) and RSTs (refusals, resets) are always reported.
		if (cnt->followed && !(tcp->flags & (TCP_FLAG_SYN | TCP_FLAG_RST)))
			return 1;
	}

	rec = bpf_ringbuf_reserve(&flow_records, sizeof(*rec), 0);
	if (!rec) {
		count_lost();
		return 1;
	}
	__builtin_memset(rec, 0, sizeof(*rec));
	rec->ts_ns = bpf_ktime_get_boot_ns();
	rec->cookie = bpf_get_socket_cookie(skb);
	if (cnt && (tp = bpf_tcp_sock(sk))) {
		k.bytes_acked = tp->bytes_acked;
		k.bytes_received = tp->bytes_received;
		k.segs_out = tp->segs_out;
		k.segs_in = tp->segs_in;
		k.snd_una = tp->snd_una;
		k.rcv_nxt = tp->rcv_nxt;
		copy_counters(rec, cnt, &k);
	}
	if (!rec->cgroup_id)
		rec->cgroup_id = bpf_skb_cgroup_id(skb);
	if (sk) {
		rec->state = sk->state;
		copy_owner(rec, packet_owner(sk, st));
	}
	if (p->family == FLOW_AF_INET) {
		__builtin_memcpy(rec->saddr, &p->ip.v4.saddr, 4);
		__builtin_memcpy(rec->daddr, &p->ip.v4.daddr, 4);
	} else {
		__builtin_memcpy(rec->saddr, &p->ip.v6.saddr, 16);
		__builtin_memcpy(rec->daddr, &p->ip.v6.daddr, 16);
	}
	rec->len = skb->len;
	rec->sport = bpf_ntohs(tcp->source);
	rec->dport = bpf_ntohs(tcp->dest);
	rec->family = p->family;
	rec->type = FLOW_REC_PACKET;
	rec->direction = direction;
	rec->tcp_flags = tcp->flags;
	submit_record(rec);
	return 1;
}

// netns_cookie_skb is set by the loader when cgroup_skb programs may call
// bpf_get_netns_cookie (Linux 6.13); DNS records carry 0 otherwise.
volatile const __u8 netns_cookie_skb = 0;

// DNS capture (flowtap_dns_ingress/egress): UDP datagrams and TCP
// segments to or from port 53, with their payload, as a variable-size
// record in the same ring buffer.
#define FLOW_REC_DNS 5
#define DNS_PORT 53
// Largest payload captured: the EDNS(0) buffer size DNS flag day 2020
// recommends, so nearly every UDP answer fits whole (classic DNS: 512).
#define DNS_MAX_PAYLOAD 1232
// The scratch buffer is a power of two larger, so that a mask proves the
// copy length's bound to the verifier.
#define DNS_SCRATCH_SIZE 2048
#define DNS_FLAG_TRUNCATED 0x01

// The header of a DNS record, 144 bytes like struct flow_record, with
// type at the same offset (122) so the reader tells them apart; cap_len
// payload bytes follow it.
struct dns_record {
	__u64 ts_ns;
	__u64 cookie;
	__u64 cgroup_id;
	__u64 netns_cookie; // network namespace of the socket (0 if not known)
	__u32 msg_len;      // transport payload length on the wire
	__u32 cap_len;      // payload bytes following this header
	__u8 reserved[16];
	__u8 saddr[16];
	__u8 daddr[16];
	__u8 comm[16]; // owner's task name, if known
	__u32 pid;
	__u32 uid;
	__u32 len;      // skb->len (IP packet length)
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u8 type;      // FLOW_REC_DNS
	__u8 direction; // FLOW_DIR_*
	__u8 proto;     // IPPROTO_UDP or IPPROTO_TCP
	__u8 flags;     // DNS_FLAG_*
	__u8 pad[2];
	__u64 start_ns; // as in struct flow_record
	__u32 ppid;
	__u32 pad2;
};

struct dns_scratch {
	struct dns_record hdr;
	__u8 data[DNS_SCRATCH_SIZE];
};

// Per-CPU space to build a record in: too large for the stack, and of
// variable length, so it is copied with bpf_ringbuf_output.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dns_scratch);
} dns_scratch SEC(".maps");

// DNS payloads longer than DNS_MAX_PAYLOAD, captured truncated.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} dns_truncated SEC(".maps");

static __always_inline void handle_dns(struct __sk_buff *skb, __u8 direction, const struct pkt *p)
{
	struct dns_scratch *s;
	struct bpf_sock *sk;
	__u32 zero = 0, off, plen;
	__u64 cap;

	// Past the UDP header, or the TCP header with its options.
	if (p->proto == IPPROTO_UDP)
		off = p->off + sizeof(struct udphdr);
	else
		off = p->off + (__u32)(p->tcp.doff_res >> 4) * 4;
	if (skb->len <= off)
		return; // no payload (a bare TCP ACK, SYN, FIN)
	plen = skb->len - off;

	s = bpf_map_lookup_elem(&dns_scratch, &zero);
	if (!s)
		return;
	__builtin_memset(&s->hdr, 0, sizeof(s->hdr));
	cap = plen;
	if (cap > DNS_MAX_PAYLOAD) {
		__u64 *n = bpf_map_lookup_elem(&dns_truncated, &zero);

		if (n)
			__sync_fetch_and_add(n, 1);
		cap = DNS_MAX_PAYLOAD;
		s->hdr.flags = DNS_FLAG_TRUNCATED;
	}
	// A no-op (1 <= cap <= DNS_MAX_PAYLOAD) that proves both bounds to
	// the verifier, in a form every kernel's follows (6.1's lost a
	// separate cap == 0 check on the copy the call used); in asm so the
	// compiler cannot drop it.
	cap -= 1;
	asm volatile("%[c] &= %[m]" : [c] "+r"(cap) : [m] "i"(DNS_SCRATCH_SIZE - 1));
	cap += 1;
	if (bpf_skb_load_bytes(skb, off, s->data, cap) < 0)
		return;

	s->hdr.ts_ns = bpf_ktime_get_boot_ns();
	s->hdr.cookie = bpf_get_socket_cookie(skb);
	s->hdr.cgroup_id = bpf_skb_cgroup_id(skb);
	if (netns_cookie_skb)
		s->hdr.netns_cookie = bpf_get_netns_cookie(skb);
	s->hdr.msg_len = plen;
	s->hdr.cap_len = cap;
	sk = skb->sk;
	if (sk)
		sk = bpf_sk_fullsock(sk);
	if (sk) {
		struct sock_state *st = bpf_sk_storage_get(&sock_states, sk, 0, 0);

		if (st) {
			s->hdr.pid = st->owner.pid;
			s->hdr.uid = st->owner.uid;
			__builtin_memcpy(s->hdr.comm, st->owner.comm, sizeof(s->hdr.comm));
			s->hdr.start_ns = st->owner.start_ns;
			s->hdr.ppid = st->owner.ppid;
		}
	}
	if (p->family == FLOW_AF_INET) {
		__builtin_memcpy(s->hdr.saddr, &p->ip.v4.saddr, 4);
		__builtin_memcpy(s->hdr.daddr, &p->ip.v4.daddr, 4);
	} else {
		__builtin_memcpy(s->hdr.saddr, &p->ip.v6.saddr, 16);
		__builtin_memcpy(s->hdr.daddr, &p->ip.v6.daddr, 16);
	}
	s->hdr.len = skb->len;
	s->hdr.sport = bpf_ntohs(p->tcp.source);
	s->hdr.dport = bpf_ntohs(p->tcp.dest);
	s->hdr.family = p->family;
	s->hdr.type = FLOW_REC_DNS;
	s->hdr.direction = direction;
	s->hdr.proto = p->proto;

	if (bpf_ringbuf_output(&flow_records, s, sizeof(s->hdr) + cap, wakeup_flags(s->hdr.ts_ns)) < 0)
		count_lost();
}

// The packet programs never drop traffic: they return 1 (allow) whatever
// happens. Two pairs, attached only when a selected event needs them:
// flowtap_ingress/egress record every flow-relevant packet
// (net_packet_flow_base selected by name), flowtap_dns_ingress/egress
// capture DNS. Neither runs more than the header reads for other packets.

static __always_inline int flow_packet(struct __sk_buff *skb, __u8 direction)
{
	struct pkt p;

	if (parse_packet(skb, &p, 1) < 0 || p.proto != IPPROTO_TCP)
		return 1;
	return handle_flow(skb, direction, &p);
}

SEC("cgroup_skb/ingress")
int flowtap_ingress(struct __sk_buff *skb)
{
	return flow_packet(skb, FLOW_DIR_INGRESS);
}

SEC("cgroup_skb/egress")
int flowtap_egress(struct __sk_buff *skb)
{
	return flow_packet(skb, FLOW_DIR_EGRESS);
}

// dns_packet reads the IP header and the ports, and leaves unless one of
// them is 53: only DNS pays for more.
static __always_inline int dns_packet(struct __sk_buff *skb, __u8 direction)
{
	struct pkt p;

	if (parse_packet(skb, &p, 0) < 0)
		return 1;
	if (p.tcp.source != bpf_htons(DNS_PORT) && p.tcp.dest != bpf_htons(DNS_PORT))
		return 1;
	// DNS over TCP: the data offset says where the payload starts.
	if (p.proto == IPPROTO_TCP && load_header(skb, p.off, &p.tcp, sizeof(p.tcp)) < 0)
		return 1;
	handle_dns(skb, direction, &p);
	return 1;
}

SEC("cgroup_skb/ingress")
int flowtap_dns_ingress(struct __sk_buff *skb)
{
	return dns_packet(skb, FLOW_DIR_INGRESS);
}

SEC("cgroup_skb/egress")
int flowtap_dns_egress(struct __sk_buff *skb)
{
	return dns_packet(skb, FLOW_DIR_EGRESS);
}

// sock_family returns a socket's address family, AF_INET or AF_INET6, or
// 0 for any other.
static __always_inline __u16 sock_family(struct tcp_sock *tp)
{
	__u16 family = tp->inet_conn.icsk_inet.sk.__sk_common.skc_family;

	return family == FLOW_AF_INET || family == FLOW_AF_INET6 ? family : 0;
}

// fill_socket fills rec's addresses, ports and family from a socket of
// that family: local in saddr/sport, remote in daddr/dport. All reads are
// direct loads through the socket's BTF pointer.
static __always_inline void fill_socket(struct flow_record *rec, struct tcp_sock *tp, __u16 family)
{
	struct inet_sock *inet = &tp->inet_conn.icsk_inet;
	struct sock_common *skc = &inet->sk.__sk_common;

	if (family == FLOW_AF_INET) {
		*(__be32 *)rec->saddr = skc->skc_rcv_saddr;
		*(__be32 *)rec->daddr = skc->skc_daddr;
	} else {
		__builtin_memcpy(rec->saddr, &skc->skc_v6_rcv_saddr, 16);
		__builtin_memcpy(rec->daddr, &skc->skc_v6_daddr, 16);
	}
	rec->sport = bpf_ntohs(inet->inet_sport);
	rec->dport = bpf_ntohs(skc->skc_dport);
	rec->family = family;
}

// submit_socket writes a closed or snapshot record for a counted socket
// tp whose state is st.
static __always_inline void submit_socket(struct tcp_sock *tp, __u64 cookie, struct sock_state *st,
					  const struct tcp_counters *k, __u8 type, __u8 state)
{
	struct flow_record *rec;
	__u16 family;

	family = sock_family(tp);
	if (!family)
		return;
	rec = bpf_ringbuf_reserve(&flow_records, sizeof(*rec), 0);
	if (!rec) {
		count_lost();
		return;
	}
	__builtin_memset(rec, 0, sizeof(*rec));
	rec->ts_ns = bpf_ktime_get_boot_ns();
	rec->cookie = cookie;
	copy_counters(rec, &st->mark, k);
	copy_owner(rec, &st->owner);
	fill_socket(rec, tp, family);
	rec->type = type;
	rec->state = state;
	submit_record(rec);
}

// sockops_owner is set by the loader when sock_ops programs may read the
// current task (bpf_get_current_task_btf): connect() and listen() then
// record their caller from the sock_ops program itself, and the cgroup
// connect programs are not needed for flows.
volatile const __u8 sockops_owner = 0;

// current_owner fills o with the current task: the caller of connect()
// or listen().
static __always_inline void current_owner(struct sock_owner *o)
{
	struct task_struct *task = bpf_get_current_task_btf();

	o->pid = task->tgid;
	o->uid = task->cred->uid.val;
	__builtin_memcpy(o->comm, task->comm, sizeof(o->comm));
	o->start_ns = task->group_leader->start_boottime;
	o->ppid = task->real_parent->tgid;
}

// task_btf is set by the loader when tracing programs may call
// bpf_get_current_task_btf (Linux 5.11). Before, the state program reads
// the current task through bpf_get_current_task and BPF_CORE_READ.
volatile const __u8 task_btf = 0;

// tracing_storage is set by the loader when tracing programs may use
// socket-local storage (Linux 5.11). Before, the state program records
// listeners' owners only (listen_owners, flows from sock_ops), and the
// packet flows, which need it, are not loaded.
volatile const __u8 tracing_storage = 0;

// current_task returns the current task: a BTF pointer, which may be read
// directly, where task_btf is set; otherwise a plain one, which only
// BPF_CORE_READ may read.
static __always_inline struct task_struct *current_task(void)
{
	if (task_btf)
		return bpf_get_current_task_btf();
	return (struct task_struct *)bpf_get_current_task();
}

// current_kthread returns 1 if the current task is a kernel thread, else 0.
static __always_inline int current_kthread(void)
{
	if (task_btf)
		return (bpf_get_current_task_btf()->flags & FLOW_PF_KTHREAD) != 0;
	return (BPF_CORE_READ(current_task(), flags) & FLOW_PF_KTHREAD) != 0;
}

// set_lineage records the owner's process start and parent from task, the
// owner: the thread group leader's start (what /proc/PID/stat reports for
// the process) and the real parent's tgid.
static __always_inline void set_lineage(struct sock_owner *o, struct task_struct *task)
{
	o->start_ns = BPF_CORE_READ(task, group_leader, start_boottime);
	o->ppid = BPF_CORE_READ(task, real_parent, tgid);
}

// set_owner_current makes the current task the owner of sk. The cgroup
// programs cannot read the task, so start_ns and ppid stay as they are for
// the same process (the tp_btf program adds them) and are cleared for
// another.
static __always_inline void set_owner_current(void *sk)
{
	struct sock_state *st;
	__u32 pid = bpf_get_current_pid_tgid() >> 32;

	st = bpf_sk_storage_get(&sock_states, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return;
	if (st->owner.pid != pid) {
		st->owner.start_ns = 0;
		st->owner.ppid = 0;
	}
	st->owner.pid = pid;
	st->owner.uid = (__u32)bpf_get_current_uid_gid();
	bpf_get_current_comm(st->owner.comm, sizeof(st->owner.comm));
}

// handle_state follows TCP state changes. Entering SYN_SENT (connect())
// or LISTEN (listen()) happens in the calling process: its task becomes the
// socket's owner, unless it is a kernel thread (an MPTCP path manager
// opening a further subflow: packet_owner gives such a subflow its MPTCP
// socket's owner). Entering SYN_SENT or LISTEN also clears the mark left from
// an earlier connection of the same socket. Entering CLOSE reports a counted
// socket with its final counters, once.
static __always_inline int handle_state(__u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	int oldstate = (int)ctx[1];
	int newstate = (int)ctx[2];
	struct sock_state *st;
	struct tcp_counters k;
	struct tcp_sock *tp;
	__u16 proto;

	// Most changes concern none of this: leave before reading anything.
	if (newstate != FLOW_TCP_SYN_SENT && newstate != FLOW_TCP_LISTEN &&
	    (newstate != FLOW_TCP_CLOSE || oldstate == FLOW_TCP_CLOSE))
		return 0;
	if (!sk)
		return 0;
	proto = sk->sk_protocol;
	if (newstate == FLOW_TCP_SYN_SENT || newstate == FLOW_TCP_LISTEN) {
		if (proto != IPPROTO_TCP && proto != FLOW_IPPROTO_MPTCP)
			return 0;
		if (socket_flows) {
			// Flows from sock_ops, on a kernel where sock_ops
			// cannot read the current task: a listener's owner,
			// for its children (connect4/6 record connectors').
			struct listen_key lk = {};
			struct sock_owner o = {};

			if (current_kthread())
				return 0;
			if (newstate != FLOW_TCP_LISTEN) {
				// connect4/6 recorded the connector, without
				// its process start and parent (which user
				// space reads from /proc where this cannot).
				if (!tracing_storage)
					return 0;
				st = bpf_sk_storage_get(&sock_states, sk, 0, 0);
				if (st && st->owner.pid == bpf_get_current_pid_tgid() >> 32 && !st->owner.start_ns)
					set_lineage(&st->owner, current_task());
				return 0;
			}
			if (task_btf) {
				current_owner(&o);
			} else {
				o.pid = bpf_get_current_pid_tgid() >> 32;
				o.uid = (__u32)bpf_get_current_uid_gid();
				bpf_get_current_comm(o.comm, sizeof(o.comm));
				set_lineage(&o, current_task());
			}
			lk.net = (__u64)sk->__sk_common.skc_net.net;
			lk.port = sk->__sk_common.skc_num;
			bpf_map_update_elem(&listen_owners, &lk, &o, BPF_ANY);
			return 0;
		}
		// A new connection, or a listener (whose mark must stay unset:
		// its children are cloned from it): no mark from before.
		st = bpf_sk_storage_get(&sock_states, sk, 0, 0);
		if (st && (newstate == FLOW_TCP_LISTEN || proto == IPPROTO_TCP))
			__builtin_memset(&st->mark, 0, sizeof(st->mark));
		if (current_kthread())
			return 0;
		// Inside the cgroup connect4/6 or sock_ops set this owner
		// already, maybe without its start and parent.
		if (!st || st->owner.pid != bpf_get_current_pid_tgid() >> 32) {
			set_owner_current(sk);
			st = bpf_sk_storage_get(&sock_states, sk, 0, 0);
			if (!st)
				return 0;
		}
		if (!st->owner.start_ns)
			set_lineage(&st->owner, current_task());
		return 0;
	}
	if (socket_flows || (proto != IPPROTO_TCP && proto != FLOW_IPPROTO_MPTCP))
		return 0;
	st = bpf_sk_storage_get(&sock_states, sk, 0, 0);
	// A socket from before start that closes without its owner applied:
	// forget the owner, so that its address, once reused, inherits
	// nothing (see start_owners).
	if (!st || !st->owner.pid) {
		__u64 key = (__u64)sk;

		bpf_map_delete_elem(&start_owners, &key);
	}
	// Only sockets the cgroup_skb programs counted are reported: that
	// keeps a capture scoped to its cgroup.
	if (proto != IPPROTO_TCP || !st || !st->mark.counted || st->mark.closed)
		return 0;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;
	// A plain check-and-set suffices: one socket's state changes are
	// serialised by its lock, and the copies of this program run for one
	// change on one CPU, one after the other.
	st->mark.closed = 1;
	core_counters(tp, &k);
	submit_socket(tp, bpf_get_socket_cookie(sk), st, &k, FLOW_REC_CLOSED, oldstate);
	return 0;
}

// The kernel skips a tracing program that is already running on the same
// CPU (a state change in a softirq that interrupts the program is not
// seen). For sockets that connect or are accepted while flowtap runs the
// certain path is sock_ops, which writes their closed records; this
// program covers sockets that existed before Open and owners outside the
// cgroup, where a rare miss is the price of not running several copies on
// every state change of the host (see README.md).
SEC("tp_btf/inet_sock_set_state")
int flowtap_state(__u64 *ctx)
{
	return handle_state(ctx);
}

// flowtap_reset reports a packet that no socket took and that the kernel
// answers with a reset (tcp_v4_send_reset / tcp_v6_send_reset with sk ==
// NULL: a SYN or stray segment to a closed port of this host, in any
// network namespace). The tracepoint passes the incoming packet; the record
// describes it (source, destination, flags as it arrived). For IPv4 the
// kernel's per-CPU control socket sends the reset, which the cgroup egress
// program also sees; for IPv6 nothing else shows the refusal.
SEC("tp_btf/tcp_send_reset")
int flowtap_reset(__u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	struct sk_buff *skb = (struct sk_buff *)ctx[1];
	struct flow_record *rec;
	union {
		struct iphdr v4;
		struct ipv6hdr v6;
	} ip;
	struct tcp_head tcp;
	unsigned char *head;
	__u64 *cnt;
	__u32 zero = 0;
	__u16 nh, th;
	__u8 ver;

	if (sk || !skb)
		return 0;
	head = skb->head;
	nh = skb->network_header;
	th = skb->transport_header;
	if (bpf_probe_read_kernel(&ver, 1, head + nh) < 0)
		return 0;
	ver >>= 4;
	if (ver == 4) {
		if (bpf_probe_read_kernel(&ip.v4, sizeof(ip.v4), head + nh) < 0)
			return 0;
	} else if (ver == 6) {
		if (bpf_probe_read_kernel(&ip.v6, sizeof(ip.v6), head + nh) < 0)
			return 0;
	} else {
		return 0;
	}
	if (bpf_probe_read_kernel(&tcp, sizeof(tcp), head + th) < 0)
		return 0;

	cnt = bpf_map_lookup_elem(&nosock_resets, &zero);
	if (cnt)
		__sync_fetch_and_add(cnt, 1);
	rec = bpf_ringbuf_reserve(&flow_records, sizeof(*rec), 0);
	if (!rec) {
		count_lost();
		return 0;
	}
	__builtin_memset(rec, 0, sizeof(*rec));
	rec->ts_ns = bpf_ktime_get_boot_ns();
	if (ver == 4) {
		__builtin_memcpy(rec->saddr, &ip.v4.saddr, 4);
		__builtin_memcpy(rec->daddr, &ip.v4.daddr, 4);
		rec->len = bpf_ntohs(ip.v4.tot_len);
		rec->family = FLOW_AF_INET;
	} else {
		__builtin_memcpy(rec->saddr, &ip.v6.saddr, 16);
		__builtin_memcpy(rec->daddr, &ip.v6.daddr, 16);
		rec->len = bpf_ntohs(ip.v6.payload_len) + sizeof(ip.v6);
		rec->family = FLOW_AF_INET6;
	}
	rec->sport = bpf_ntohs(tcp.source);
	rec->dport = bpf_ntohs(tcp.dest);
	rec->type = FLOW_REC_NOSOCK;
	rec->direction = FLOW_DIR_INGRESS;
	rec->tcp_flags = tcp.flags;
	submit_record(rec);
	return 0;
}


// sock_flags reads sk_flags, which moved into struct sock_common.
static __always_inline unsigned long sock_flags(struct sock *sk)
{
	if (bpf_core_field_exists(struct sock_common, skc_flags))
		return sk->__sk_common.skc_flags;
	return sk->sk_flags;
}

// sock_cgroup returns the cgroup v2 id of a full socket, or 0 before
// Linux 5.15, where struct sock_cgroup_data holds the pointer in an
// integer that a BTF pointer walk cannot follow (user space then takes the
// cgroup of the socket's owner).
static __always_inline __u64 sock_cgroup(struct tcp_sock *tp)
{
	if (!bpf_core_field_exists(struct sock_cgroup_data, cgroup))
		return 0;
	return tp->inet_conn.icsk_inet.sk.sk_cgrp_data.cgroup->kn->id;
}

// listen_key_of fills the key of tp's network namespace and local port.
static __always_inline void listen_key_of(struct tcp_sock *tp, struct listen_key *lk)
{
	lk->net = (__u64)tp->inet_conn.icsk_inet.sk.__sk_common.skc_net.net;
	lk->port = tp->inet_conn.icsk_inet.sk.__sk_common.skc_num;
}

// submit_moment writes a packet record for a moment of a connection that
// sock_ops saw: src/dst as the packet would carry them (outgoing: local to
// remote; incoming: remote to local), the socket's state, and its owner
// and cgroup where known (the tracker keeps an endpoint's context from
// its first record that has it).
static __always_inline void submit_moment(struct bpf_sock_ops *skops, const struct sock_owner *o, __u64 cgroup_id,
					  __u8 direction, __u8 flags)
{
	struct flow_record *rec;
	__u32 lport, rport;
	__u8 *src, *dst;

	if (skops->family != FLOW_AF_INET && skops->family != FLOW_AF_INET6)
		return;
	rec = bpf_ringbuf_reserve(&flow_records, sizeof(*rec), 0);
	if (!rec) {
		count_lost();
		return;
	}
	__builtin_memset(rec, 0, sizeof(*rec));
	rec->ts_ns = bpf_ktime_get_boot_ns();
	rec->cookie = bpf_get_socket_cookie(skops);
	lport = skops->local_port;
	rport = bpf_ntohl(skops->remote_port) & 0xffff;
	src = direction == FLOW_DIR_EGRESS ? rec->saddr : rec->daddr;
	dst = direction == FLOW_DIR_EGRESS ? rec->daddr : rec->saddr;
	if (skops->family == FLOW_AF_INET) {
		__u32 l = skops->local_ip4, r = skops->remote_ip4;

		__builtin_memcpy(src, &l, 4);
		__builtin_memcpy(dst, &r, 4);
		rec->family = FLOW_AF_INET;
	} else {
		__u32 l[4], r[4];

		l[0] = skops->local_ip6[0];
		l[1] = skops->local_ip6[1];
		l[2] = skops->local_ip6[2];
		l[3] = skops->local_ip6[3];
		r[0] = skops->remote_ip6[0];
		r[1] = skops->remote_ip6[1];
		r[2] = skops->remote_ip6[2];
		r[3] = skops->remote_ip6[3];
		if (!l[0] && !l[1] && l[2] == bpf_htonl(0xffff)) {
			// An AF_INET6 socket talking IPv4 (an IPv4-mapped
			// address): the packets are IPv4.
			__builtin_memcpy(src, &l[3], 4);
			__builtin_memcpy(dst, &r[3], 4);
			rec->family = FLOW_AF_INET;
		} else {
			__builtin_memcpy(src, l, 16);
			__builtin_memcpy(dst, r, 16);
			rec->family = FLOW_AF_INET6;
		}
	}
	rec->sport = direction == FLOW_DIR_EGRESS ? lport : rport;
	rec->dport = direction == FLOW_DIR_EGRESS ? rport : lport;
	rec->type = FLOW_REC_PACKET;
	rec->direction = direction;
	rec->tcp_flags = flags;
	rec->state = skops->state;
	rec->cgroup_id = cgroup_id;
	copy_owner(rec, o);
	submit_record(rec);
}

// follow marks a full socket that was accepted (packet flows) as counted
// and followed (its close comes from the state callback), with its
// cgroup, and returns its state.
static __always_inline struct sock_state *follow(struct bpf_sock *sk)
{
	struct sock_state *st;
	struct tcp_sock *tp;

	st = bpf_sk_storage_get(&sock_states, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return NULL;
	if (!st->mark.counted) {
		// A child inherits nothing of its listener's mark (never
		// set): no mark from before.
		__builtin_memset(&st->mark, 0, sizeof(st->mark));
		st->mark.counted = 1;
	}
	tp = bpf_skc_to_tcp_sock(sk);
	if (tp && !st->mark.cgroup_id)
		st->mark.cgroup_id = sock_cgroup(tp);
	if (tp && !st->owner.pid) {
		// The child of a listener from before start that the walk of
		// TCP sockets did not reach (another network namespace).
		struct listen_key lk = {};
		struct sock_owner *o;

		listen_key_of(tp, &lk);
		o = bpf_map_lookup_elem(&listen_owners, &lk);
		if (o)
			st->owner = *o;
	}
	st->mark.followed = 1;
	return st;
}

// The sock_ops callback flag that marks a socket that connected (it sent
// the SYN, which its bytes_acked counts): BPF_SOCK_OPS_RTO_CB_FLAG, which
// costs a callback only on a retransmission timeout and leaves flowtap's
// socket-local storage out of the flows from sock_ops altogether.
#define FLOW_CONNECTOR_FLAG BPF_SOCK_OPS_RTO_CB_FLAG

// socket_connect handles connect() sending the SYN, with flows from
// sock_ops: the SYN record, with the caller as owner.
static __always_inline void socket_connect(struct bpf_sock_ops *skops, struct bpf_sock *sk)
{
	struct sock_owner o = {};
	struct sock_state *st;
	struct tcp_sock *tp;

	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return;
	if (sockops_owner) {
		current_owner(&o);
	} else {
		// The cgroup connect programs recorded it.
		st = bpf_sk_storage_get(&sock_states, sk, 0, 0);
		if (st)
			o = st->owner;
	}
	submit_moment(skops, &o, sock_cgroup(tp), FLOW_DIR_EGRESS, TCP_FLAG_SYN);
}

// socket_accepted handles a connection a listener accepted, with flows
// from sock_ops: the SYN-ACK record, with the listener's owner (from
// listen_owners: no socket-local storage, so none to clone to children).
static __always_inline void socket_accepted(struct bpf_sock_ops *skops, struct bpf_sock *sk)
{
	struct listen_key lk = {};
	struct sock_owner *o;
	struct tcp_sock *tp;

	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return;
	listen_key_of(tp, &lk);
	o = bpf_map_lookup_elem(&listen_owners, &lk);
	submit_moment(skops, o, sock_cgroup(tp), FLOW_DIR_EGRESS, TCP_FLAG_SYN | TCP_FLAG_ACK);
}

// payload_only takes the SYN and FINs out of a followed socket's
// bytes_acked (sent) and bytes_received (recv), which count sequence
// numbers, from the socket alone (flows from sock_ops keep no mark): the
// SYN it sent is in bytes_acked once answered (it connected:
// FLOW_CONNECTOR_FLAG in its callback flags); the FIN it sent is in
// bytes_acked once acknowledged (state is one after sending a FIN, and
// everything up to write_seq, the FIN's end, is acknowledged); the FIN it
// received is in bytes_received (SOCK_DONE: tcp_fin runs for a FIN
// received in order).
static __always_inline void payload_only(struct tcp_sock *tp, __u32 cb_flags, __u32 state, __u32 snd_una,
					 __u64 *sent, __u64 *recv)
{
	if ((cb_flags & FLOW_CONNECTOR_FLAG) && *sent)
		(*sent)--;
	if ((state == FLOW_TCP_FIN_WAIT1 || state == FLOW_TCP_FIN_WAIT2 || state == FLOW_TCP_CLOSING ||
	     state == FLOW_TCP_LAST_ACK) &&
	    snd_una == tp->write_seq && *sent)
		(*sent)--;
	if ((sock_flags(&tp->inet_conn.icsk_inet.sk) & (1 << FLOW_SOCK_DONE)) && *recv)
		(*recv)--;
}

// submit_followed writes a closed or snapshot record of a socket followed
// with flows from sock_ops, from its counters k alone (payload_only),
// with cb_flags its sock_ops callback flags and state the state it is in
// or left.
static __always_inline void submit_followed(struct tcp_sock *tp, __u16 family, __u64 cookie, const struct tcp_counters *k,
					    __u32 cb_flags, __u8 type, __u8 state)
{
	struct flow_record *rec;
	__u64 sent = k->bytes_acked, recv = k->bytes_received;

	payload_only(tp, cb_flags, state, k->snd_una, &sent, &recv);
	rec = bpf_ringbuf_reserve(&flow_records, sizeof(*rec), 0);
	if (!rec) {
		count_lost();
		return;
	}
	__builtin_memset(rec, 0, sizeof(*rec));
	rec->ts_ns = bpf_ktime_get_boot_ns();
	rec->cookie = cookie;
	rec->bytes_sent = sent;
	rec->bytes_received = recv;
	rec->packets_sent = k->segs_out;
	rec->packets_received = k->segs_in;
	rec->cgroup_id = sock_cgroup(tp);
	fill_socket(rec, tp, family);
	rec->type = type;
	rec->state = state;
	submit_record(rec);
}

// socket_closed writes the closed record of a socket followed with flows
// from sock_ops.
static __always_inline void socket_closed(struct bpf_sock_ops *skops, struct bpf_sock *sk, __u32 oldstate)
{
	struct tcp_counters k;
	struct tcp_sock *tp;
	__u16 family;

	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp || !(family = sock_family(tp)))
		return;
	// A connect() the peer answered with a reset: the reset it got.
	if (oldstate == FLOW_TCP_SYN_SENT && tp->inet_conn.icsk_inet.sk.sk_err == FLOW_ECONNREFUSED)
		submit_moment(skops, NULL, 0, FLOW_DIR_INGRESS, TCP_FLAG_RST | TCP_FLAG_ACK);
	// The state callback runs in tcp_set_state, before the socket is torn
	// down: the ACK that moved it here has been processed.
	k.bytes_acked = skops->bytes_acked;
	k.bytes_received = skops->bytes_received;
	k.segs_out = skops->segs_out;
	k.segs_in = skops->segs_in;
	k.snd_una = skops->snd_una;
	submit_followed(tp, family, bpf_get_socket_cookie(skops), &k, skops->bpf_sock_ops_cb_flags, FLOW_REC_CLOSED, oldstate);
}

// flowtap_sockops follows the cgroup's TCP sockets from connect() or
// accept() (it asks the kernel for their state changes,
// BPF_SOCK_OPS_STATE_CB) to close, and records the owner of a listening
// socket. With socket_flows it writes the connection's moments as packet
// records and the close from the socket's counters, and uses no
// socket-local storage (an allocation per socket, and one more for every
// child cloned from a listener that has it, was the largest part of what
// the BPF side cost a short connection). With packet flows it marks the
// sockets it follows in their storage and writes their closed records,
// while the packet programs write the moments. Unlike the tracing
// program, cgroup programs are never skipped, so for these sockets the
// closed record is certain; the tp_btf program remains for sockets that
// existed before flowtap started. Whichever runs first writes the record
// (sock_mark.closed); sock_ops runs first.
SEC("sockops")
int flowtap_sockops(struct bpf_sock_ops *skops)
{
	struct sock_owner o = {};
	struct sock_state *st;
	struct bpf_sock *sk;
	struct tcp_counters k;
	struct tcp_sock *tp;
	__u32 oldstate, newstate;

	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		// connect() is sending the SYN.
		sk = skops->sk;
		if (!sk)
			return 1;
		if (socket_flows) {
			socket_connect(skops, sk);
			bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG | FLOW_CONNECTOR_FLAG);
			return 1;
		}
		// A new connection of this socket: drop the mark of an earlier
		// one (the tp_btf program does too, on SYN_SENT); the SYN's
		// packet record sets it.
		st = bpf_sk_storage_get(&sock_states, sk, 0, 0);
		if (st)
			__builtin_memset(&st->mark, 0, sizeof(st->mark));
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
		return 1;
	case BPF_SOCK_OPS_RWND_INIT:
		// A listener got a SYN and made a request socket for it (not
		// a full socket; a connecting socket comes here too, full).
		if (socket_flows && !skops->is_fullsock)
			submit_moment(skops, NULL, 0, FLOW_DIR_INGRESS, TCP_FLAG_SYN);
		return 1;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		sk = skops->sk;
		if (sk) {
			if (socket_flows) {
				socket_accepted(skops, sk);
			} else {
				// An accepted socket may close without a
				// flow-relevant packet of its own passing the
				// cgroup_skb programs before (an abort sends its
				// RST after the state change): mark it now, with
				// the cgroup it inherited from its listener. Its
				// state was cloned from the listener's (the
				// owner), or is created here.
				st = follow(sk);
				// The handshake's end as a moment too: some
				// kernels' cgroup egress does not see an IPv6
				// listener's SYN-ACK (Debian's 6.1). The tracker
				// begins an endpoint once, whichever comes first.
				submit_moment(skops, st ? &st->owner : NULL, st ? st->mark.cgroup_id : 0,
					      FLOW_DIR_EGRESS, TCP_FLAG_SYN | TCP_FLAG_ACK);
			}
		}
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
		return 1;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		// The SYN-ACK came.
		if (socket_flows) {
			submit_moment(skops, NULL, 0, FLOW_DIR_INGRESS, TCP_FLAG_SYN | TCP_FLAG_ACK);
			return 1;
		}
		// From now on the closed record comes from here.
		sk = skops->sk;
		if (sk) {
			st = bpf_sk_storage_get(&sock_states, sk, 0, 0);
			if (st && st->mark.counted)
				st->mark.followed = 1;
		}
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
		return 1;
	case BPF_SOCK_OPS_TCP_LISTEN_CB:
		// listen() runs in the caller (the tp_btf program records the
		// same on LISTEN, but it can be skipped).
		sk = skops->sk;
		if (!sk)
			return 1;
		// Only where sock_ops may read the current task; elsewhere the
		// state program records it on LISTEN.
		if (!sockops_owner)
			return 1;
		current_owner(&o);
		if (socket_flows) {
			// Its children find it here by network namespace and
			// port.
			struct listen_key lk = {};

			tp = bpf_skc_to_tcp_sock(sk);
			if (!tp)
				return 1;
			listen_key_of(tp, &lk);
			bpf_map_update_elem(&listen_owners, &lk, &o, BPF_ANY);
			return 1;
		}
		st = bpf_sk_storage_get(&sock_states, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (st)
			st->owner = o;
		return 1;
	case BPF_SOCK_OPS_STATE_CB:
		break;
	default:
		return 1;
	}
	oldstate = skops->args[0];
	newstate = skops->args[1];
	if (newstate != FLOW_TCP_CLOSE || oldstate == FLOW_TCP_CLOSE)
		return 1;
	sk = skops->sk;
	if (!sk)
		return 1;
	if (socket_flows) {
		socket_closed(skops, sk, oldstate);
		return 1;
	}
	st = bpf_sk_storage_get(&sock_states, sk, 0, 0);
	if (!st || !st->mark.counted || st->mark.closed)
		return 1;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 1;
	st->mark.closed = 1;
	k.bytes_acked = skops->bytes_acked;
	k.bytes_received = skops->bytes_received;
	k.segs_out = skops->segs_out;
	k.segs_in = skops->segs_in;
	k.snd_una = skops->snd_una;
	k.rcv_nxt = skops->rcv_nxt;
	submit_socket(tp, bpf_get_socket_cookie(skops), st, &k, FLOW_REC_CLOSED, oldstate);
	return 1;
}

// connect() of a TCP socket in the cgroup: the caller is its owner. The
// tp_btf program records the same on SYN_SENT, but it can be skipped.
static __always_inline int handle_connect(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;

	if (sk && ctx->type == FLOW_SOCK_STREAM && ctx->protocol == IPPROTO_TCP)
		set_owner_current(sk);
	return 1;
}

SEC("cgroup/connect4")
int flowtap_connect4(struct bpf_sock_addr *ctx)
{
	return handle_connect(ctx);
}

SEC("cgroup/connect6")
int flowtap_connect6(struct bpf_sock_addr *ctx)
{
	return handle_connect(ctx);
}

// flowtap_files runs once at start-up over every open file of every task:
// each TCP or MPTCP stream socket that is not closed gets its holder
// recorded in start_owners under the socket's address (the first task
// found holding it wins). The socket pointer reached from the file is
// read, not used: some verifiers do not trust it for socket-local storage
// (see start_owners).
SEC("iter/task_file")
int flowtap_files(struct bpf_iter__task_file *ctx)
{
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	struct sock_owner o = {};
	struct socket *sock;
	struct sock *sk;
	__u16 proto;
	__u64 key;

	if (!task || !file)
		return 0;
	// A socket's file: a socket inode whose private data is a socket
	// that points back to the file. (bpf_sock_from_file tests the file's
	// operations instead, but only from Linux 5.11 on.)
	if ((BPF_CORE_READ(file, f_inode, i_mode) & FLOW_S_IFMT) != FLOW_S_IFSOCK)
		return 0;
	sock = BPF_CORE_READ(file, private_data);
	if (!sock || BPF_CORE_READ(sock, file) != file)
		return 0;
	sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return 0;
	proto = BPF_CORE_READ(sk, sk_protocol);
	if (proto != IPPROTO_TCP && proto != FLOW_IPPROTO_MPTCP)
		return 0;
	if (BPF_CORE_READ(sk, sk_type) != FLOW_SOCK_STREAM)
		return 0;
	// A socket not connected or listening yet gets its owner when it
	// does.
	if (BPF_CORE_READ(sk, __sk_common.skc_state) == FLOW_TCP_CLOSE)
		return 0;
	o.pid = BPF_CORE_READ(task, tgid);
	o.uid = BPF_CORE_READ(task, cred, uid.val);
	BPF_CORE_READ_STR_INTO(&o.comm, task, comm);
	set_lineage(&o, task);
	key = (__u64)sk;
	bpf_map_update_elem(&start_owners, &key, &o, BPF_NOEXIST);
	if (BPF_CORE_READ(sk, __sk_common.skc_state) == FLOW_TCP_LISTEN) {
		struct listen_key lk = {};

		lk.net = (__u64)BPF_CORE_READ(sk, __sk_common.skc_net.net);
		lk.port = BPF_CORE_READ(sk, __sk_common.skc_num);
		bpf_map_update_elem(&listen_owners, &lk, &o, BPF_NOEXIST);
	}
	return 0;
}

// flowtap_owners runs once at start-up, after flowtap_files, over the TCP
// sockets of flowtap's network namespace, where the socket pointer is
// trusted: a socket without an owner gets the one flowtap_files recorded.
SEC("iter/tcp")
int flowtap_owners(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct sock_state *st;
	struct tcp_sock *tp;

	if (!skc)
		return 0;
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	st = bpf_sk_storage_get(&sock_states, tp, 0, 0);
	if (st && st->owner.pid)
		return 0;
	start_owner(tp, (__u64)tp, st);
	return 0;
}

// flowtap_subflows runs once at start-up, after flowtap_files, over every
// TCP socket of flowtap's network namespace: an MPTCP subflow (it has no
// file) without an owner gets the owner of its MPTCP socket, which
// flowtap_files recorded under the MPTCP socket's address. The subflow
// reaches its MPTCP socket only through plain kernel memory
// (tcp_sock.is_mptcp, icsk_ulp_data, conn). The entry stays: the MPTCP
// socket's other subflows need it too.
SEC("iter/tcp")
int flowtap_subflows(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct mptcp_subflow_context *sf;
	struct sock_owner *mo;
	struct sock_state *st;
	struct tcp_sock *tp;
	struct sock *msk;
	__u64 key;

	if (!skc)
		return 0;
	if (!bpf_core_field_exists(struct tcp_sock, is_mptcp) ||
	    !bpf_core_type_exists(struct mptcp_subflow_context))
		return 0;
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp || !BPF_CORE_READ(tp, is_mptcp))
		return 0;
	sf = BPF_CORE_READ(tp, inet_conn.icsk_ulp_data);
	if (!sf)
		return 0;
	msk = BPF_CORE_READ(sf, conn);
	if (!msk)
		return 0;
	key = (__u64)msk;
	mo = bpf_map_lookup_elem(&start_owners, &key);
	if (!mo)
		return 0;
	st = bpf_sk_storage_get(&sock_states, tp, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (st && !st->owner.pid)
		st->owner = *mo;
	return 0;
}

// stored_cookie returns tp's socket cookie as the kernel stored it when a
// program first asked for it. The iterators read it so, because
// bpf_get_socket_cookie is theirs only from Linux 5.12; every socket they
// report has had its cookie asked for by the sock_ops or packet programs.
static __always_inline __u64 stored_cookie(struct tcp_sock *tp)
{
	return tp->inet_conn.icsk_inet.sk.__sk_common.skc_cookie.counter;
}

// snapshot_followed writes a snapshot record of a socket the sock_ops
// program follows (flows from sock_ops: its state callback flag is set).
static __always_inline void snapshot_followed(struct tcp_sock *tp)
{
	struct tcp_counters k;
	__u16 family;

	if (!(tp->bpf_sock_ops_cb_flags & BPF_SOCK_OPS_STATE_CB_FLAG) || !(family = sock_family(tp)))
		return;
	core_counters(tp, &k);
	submit_followed(tp, family, stored_cookie(tp), &k, tp->bpf_sock_ops_cb_flags, FLOW_REC_SNAPSHOT,
			tp->inet_conn.icsk_inet.sk.__sk_common.skc_state);
}

// flowtap_snapshot reports every counted TCP socket with its current
// counters and state.
SEC("iter/tcp")
int flowtap_snapshot(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct sock_state *st;
	struct tcp_counters k;
	struct tcp_sock *tp;

	if (!skc)
		return 0;
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	if (socket_flows) {
		snapshot_followed(tp);
		return 0;
	}
	st = bpf_sk_storage_get(&sock_states, tp, 0, 0);
	if (!st || !st->mark.counted)
		return 0;
	core_counters(tp, &k);
	submit_socket(tp, stored_cookie(tp), st, &k, FLOW_REC_SNAPSHOT, skc->skc_state);
	return 0;
}
