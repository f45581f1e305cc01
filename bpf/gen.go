// SPDX-License-Identifier: Apache-2.0

// Package bpf is flowtap's kernel flow capture and the base producer of
// net_packet_flow_base and net_tcp_socket_base events.
//
// cgroup_skb ingress and egress programs (flowtap.bpf.c), attached with BPF
// links to a cgroup v2 directory, write one fixed-size record per
// flow-relevant TCP packet (SYN, SYN-ACK, FIN, RST) into a BPF ring buffer,
// with the kernel's own TCP counters of the socket (payload bytes
// acknowledged and received, segments). A tp_btf program on
// tcp_send_reset reports packets no socket took (refused attempts). sock_ops and
// tp_btf programs report sockets that close, with their final counters;
// they, cgroup/connect4/6 and BPF iterators (for sockets that existed
// before Open) record each socket's owning process. [Capture.Snapshot]
// reports open sockets. [Capture] loads and attaches the programs and turns
// each record into a typed [events.Event]; [Decode] does the per-record
// conversion. See README.md.
//
// The generated files flowtap_bpfel.go and flowtap_bpfel.o are committed;
// regenerate them with "go generate ./bpf/".
package bpf

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type flow_record -type dns_record flowtap flowtap.bpf.c -- -I/usr/include/x86_64-linux-gnu
