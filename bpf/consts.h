/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* consts.h — protocol numbers, compile-time bounds and load-time knobs of
 * the Wardline fast path. Compile-time bounds size buffers and loops (the
 * verifier needs them); everything an operator may tune is a `volatile const`
 * global set by the Go loader before load (dataplane/loader.go), never an
 * #ifdef, so one object serves every configuration. */
#pragma once

/* EtherTypes (network byte order is applied at the comparison site). */
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_ARP 0x0806
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define ETH_HLEN_ 14

/* IPv6 next-header values the parser understands. */
#define NEXTHDR_HOP 0
#define NEXTHDR_TCP 6
#define NEXTHDR_UDP 17
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_ESP 50
#define NEXTHDR_AUTH 51
#define NEXTHDR_ICMP6 58
#define NEXTHDR_NONE 59
#define NEXTHDR_DEST 60
#define NEXTHDR_MOBILITY 135

#define PROTO_ICMP 1
#define PROTO_TCP 6
#define PROTO_UDP 17
#define PROTO_ICMP6 58

/* TCP flag bits as they appear in byte 13 of the TCP header. */
#define TCPF_FIN 0x01
#define TCPF_SYN 0x02
#define TCPF_RST 0x04
#define TCPF_PSH 0x08
#define TCPF_ACK 0x10
#define TCPF_URG 0x20
#define TCPF_ECE 0x40
#define TCPF_CWR 0x80

#define DNS_PORT 53
#define DHCP_SERVER_PORT 67
#define DHCP_CLIENT_PORT 68

/* Compile-time bounds. */
#define WL_VLAN_MAX 2        /* 802.1Q/802.1ad tags parsed; a third is a parse error */
#define WL_IPV6_EXT_MAX 6    /* IPv6 extension headers skipped before giving up */
#define WL_SNIPPET_MAX 4096  /* capacity of a snippet event's data[]; wl_snippet_len <= this */
#define WL_SNIPPET_CONT_MAX 3 /* continuation snippets for one multi-segment ClientHello */
#define WL_MAX_CPUS 512       /* CPUs summed by wl_sweep */
#define WL_PEEK_LEN 8        /* payload bytes inspected to classify a first client payload */

/* Load-time knobs (set by dataplane/loader.go from the validated config).
 * Defaults here are the same as the config defaults so that the object is
 * usable as-is by packet tests. */
volatile const __u32 wl_snippet_len = 2048;          /* bytes of payload copied per snippet */
volatile const __u32 wl_flow_sample = 1;             /* track 1 in N flows (by key hash); 1 = all */
volatile const __u64 wl_idle_timeout_ns = 60000000000ULL;   /* no packet for this long -> idle record */
volatile const __u64 wl_active_timeout_ns = 120000000000ULL; /* interim record at least this often */
volatile const __u64 wl_wakeup_bytes = 65536;              /* wake the reader when this much is pending */
volatile const __u64 wl_close_timeout_ns = 5000000000ULL;   /* closed (FIN both ways / RST) but not yet exported */
