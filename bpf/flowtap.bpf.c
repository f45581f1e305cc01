//go:build ignore

// flowtap kernel side: cgroup_skb ingress and egress programs that report
// flow-relevant TCP packets (any packet with SYN, FIN or RST set) as one
// fixed-size record each in a BPF ring buffer. The programs never drop
// traffic: every path returns 1 (allow).

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char __license[] SEC("license") = "Dual MIT/GPL";

// Values of flow_record.direction.
#define FLOW_DIR_INGRESS 1
#define FLOW_DIR_EGRESS 2

// Address families as the socket API numbers them (the uapi headers do not
// define AF_*).
#define FLOW_AF_INET 2
#define FLOW_AF_INET6 10

// TCP flags byte (offset 13 of the TCP header).
#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
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

// One record per flow-relevant packet. The layout is fixed and padded
// explicitly so that C and the bpf2go-generated Go struct agree byte for
// byte (72 bytes, 8-byte aligned). Ports are in host byte order;
// addresses are in network byte order, IPv4 in the first 4 bytes.
struct flow_record {
	__u64 ts_ns;     // bpf_ktime_get_boot_ns (CLOCK_BOOTTIME)
	__u64 cookie;    // bpf_get_socket_cookie(skb)
	__u64 cgroup_id; // bpf_skb_cgroup_id(skb)
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 len; // skb->len: IP packet length
	__u16 sport;
	__u16 dport;
	__u16 family;   // FLOW_AF_INET or FLOW_AF_INET6
	__u8 direction; // FLOW_DIR_INGRESS or FLOW_DIR_EGRESS
	__u8 tcp_flags;
	__u8 pad[4];
};

// The ring buffer size is a default; the Go loader overrides max_entries
// before loading. The value type only annotates the map for bpf2go (it
// generates the Go struct from it); the loader drops it before creating the
// map, since ring buffers have no value size.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
	__type(value, struct flow_record);
} flow_records SEC(".maps");

// Records that could not be reserved in the ring buffer (it was full).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost_records SEC(".maps");

struct ipv6_ext {
	__u8 nexthdr;
	__u8 hdrlen;
	__be16 frag_off; // only meaningful for the fragment header
};

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&lost_records, &zero);

	if (lost)
		__sync_fetch_and_add(lost, 1);
}

// parse_ipv6 fills the addresses and returns the offset of the TCP header,
// or -1 if the packet is not (the first fragment of) an IPv6 TCP packet.
static __always_inline int parse_ipv6(struct __sk_buff *skb, __u8 *saddr, __u8 *daddr)
{
	struct ipv6hdr ip6;
	struct ipv6_ext ext;
	__u32 off = sizeof(ip6);
	__u8 nexthdr;
	int i;

	if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)) < 0)
		return -1;
	if (ip6.version != 6)
		return -1;
	__builtin_memcpy(saddr, &ip6.saddr, 16);
	__builtin_memcpy(daddr, &ip6.daddr, 16);
	nexthdr = ip6.nexthdr;

	// Unrolled on purpose: kernel 6.18's verifier fails with EFAULT
	// ("verifier bug") on the equivalent bounded loop when the loader lacks
	// CAP_PERFMON; the unrolled form verifies with CAP_BPF alone.
#pragma unroll
	for (i = 0; i < IPV6_MAX_EXT_HEADERS; i++) {
		switch (nexthdr) {
		case IPPROTO_TCP:
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
	if (nexthdr == IPPROTO_TCP)
		return off;
	return -1;
}

// parse_ipv4 fills the addresses and returns the offset of the TCP header,
// or -1 if the packet is not (the first fragment of) an IPv4 TCP packet.
static __always_inline int parse_ipv4(struct __sk_buff *skb, __u8 *saddr, __u8 *daddr)
{
	struct iphdr ip4;

	if (bpf_skb_load_bytes(skb, 0, &ip4, sizeof(ip4)) < 0)
		return -1;
	if (ip4.version != 4 || ip4.ihl < 5)
		return -1;
	if (ip4.protocol != IPPROTO_TCP)
		return -1;
	if (bpf_ntohs(ip4.frag_off) & IP4_OFFSET_MASK)
		return -1;
	__builtin_memcpy(saddr, &ip4.saddr, 4);
	__builtin_memcpy(daddr, &ip4.daddr, 4);
	return ip4.ihl * 4;
}

static __always_inline int handle_skb(struct __sk_buff *skb, __u8 direction)
{
	__u8 saddr[16] = {}, daddr[16] = {};
	struct tcphdr tcp;
	struct flow_record *rec;
	__u16 family;
	__u8 flags;
	int off;

	switch (skb->protocol) {
	case bpf_htons(ETH_P_IP):
		family = FLOW_AF_INET;
		off = parse_ipv4(skb, saddr, daddr);
		break;
	case bpf_htons(ETH_P_IPV6):
		family = FLOW_AF_INET6;
		off = parse_ipv6(skb, saddr, daddr);
		break;
	default:
		return 1;
	}
	if (off < 0)
		return 1;
	if (bpf_skb_load_bytes(skb, off, &tcp, sizeof(tcp)) < 0)
		return 1;
	flags = ((__u8 *)&tcp)[13];
	if (!(flags & TCP_FLOW_FLAGS))
		return 1; // data packets only matter to counters, not to the ring

	rec = bpf_ringbuf_reserve(&flow_records, sizeof(*rec), 0);
	if (!rec) {
		count_lost();
		return 1;
	}
	__builtin_memset(rec, 0, sizeof(*rec));
	rec->ts_ns = bpf_ktime_get_boot_ns();
	rec->cookie = bpf_get_socket_cookie(skb);
	rec->cgroup_id = bpf_skb_cgroup_id(skb);
	__builtin_memcpy(rec->saddr, saddr, 16);
	__builtin_memcpy(rec->daddr, daddr, 16);
	rec->len = skb->len;
	rec->sport = bpf_ntohs(tcp.source);
	rec->dport = bpf_ntohs(tcp.dest);
	rec->family = family;
	rec->direction = direction;
	rec->tcp_flags = flags;
	bpf_ringbuf_submit(rec, 0);
	return 1;
}

SEC("cgroup_skb/ingress")
int flowtap_ingress(struct __sk_buff *skb)
{
	return handle_skb(skb, FLOW_DIR_INGRESS);
}

SEC("cgroup_skb/egress")
int flowtap_egress(struct __sk_buff *skb)
{
	return handle_skb(skb, FLOW_DIR_EGRESS);
}
