/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* structs.h — every struct shared between the fast path and Go.
 *
 * C is the source of truth: bpf2go emits the Go mirrors (dataplane/wl_bpfel.go)
 * and nobody writes them by hand. When a layout here changes:
 *   - bump WL_EVENT_VERSION for event structs (dataplane/event/event.go checks it),
 *   - bump the _vN suffix of the map that stores it (maps.h) so a restarted
 *     daemon never reinterprets an old pinned map,
 *   - run `make generate` and update dataplane/decode.go.
 * Every struct has explicit padding so that C and Go agree byte for byte and
 * stack copies can be zero-initialised (the verifier rejects uninitialised
 * padding in keys). */
#pragma once

#define WL_EVENT_VERSION 1

/* Ring-buffer event types (wl_event_hdr.type). */
enum wl_event_type {
	WL_EV_FLOW = 1,    /* struct wl_flow_event */
	WL_EV_SNIPPET = 2, /* struct wl_snippet_event */
};

/* Why a flow record was emitted (wl_flow_event.reason). */
enum wl_reason {
	WL_REASON_FIN = 1,    /* TCP closed by FIN in both directions */
	WL_REASON_RST = 2,    /* TCP reset */
	WL_REASON_IDLE = 3,   /* no packet for wl_idle_timeout_ns */
	WL_REASON_ACTIVE = 4, /* interim record of a long flow (not final) */
};

/* Snippet kinds (wl_snippet_event.kind). */
enum wl_snippet_kind {
	WL_SNIP_DNS = 1,  /* DNS message over UDP/TCP port 53 (TCP keeps its 2-byte length prefix) */
	WL_SNIP_TLS = 2,  /* first client payload starting a TLS ClientHello (and continuations) */
	WL_SNIP_HTTP = 3, /* first client payload starting an HTTP/1.x request */
	WL_SNIP_PAYLOAD = 4, /* first client payload of any other TCP flow (SSH banner, SMB, JSON-RPC, ...) */
	WL_SNIP_ARP = 5,  /* an ARP frame: key saddr/daddr = sender/target IPv4, sport = opcode */
	WL_SNIP_DHCP = 6, /* a DHCPv4 message (UDP 67/68) */
};

/* Snippet flags (wl_snippet_event.flags). */
enum wl_snippet_flag {
	WL_SNIPF_TRUNCATED = 1, /* payload longer than wl_snippet_len */
	WL_SNIPF_CONT = 2,      /* continuation of an earlier snippet; see offset */
};

/* Direction of a packet relative to the flow originator. */
enum wl_dir {
	WL_DIR_ORIG = 0,
	WL_DIR_RESP = 1,
};

/* Port roles (wl_ports_v1 values). */
enum wl_port_role {
	WL_PORT_UNKNOWN = 0,
	WL_PORT_INSIDE = 1,  /* office / LAN side */
	WL_PORT_OUTSIDE = 2, /* uplink / WAN side */
};

/* Per-CPU counters (index into struct wl_stats). dataplane/stats.go names each one
 * for export; add new ones before WL_STAT_MAX only. */
enum wl_stat {
	WL_STAT_RX_PACKETS = 0,     /* every packet the program saw */
	WL_STAT_RX_BYTES,           /* real frame length, GSO super-packets included */
	WL_STAT_PASS,               /* verdict XDP_PASS */
	WL_STAT_DROP,               /* verdict XDP_DROP (blocklist) */
	WL_STAT_DROP_BYTES,
	WL_STAT_NON_IP,             /* ARP, LLDP, ...: passed untouched */
	WL_STAT_ERR_ETH,            /* truncated Ethernet header */
	WL_STAT_ERR_VLAN,           /* truncated tag or more than WL_VLAN_MAX tags */
	WL_STAT_ERR_IPV4,           /* truncated header, IHL < 5, bad version */
	WL_STAT_ERR_IPV6,           /* truncated fixed header, bad version */
	WL_STAT_ERR_IPV6_EXT,       /* truncated or more than WL_IPV6_EXT_MAX extension headers */
	WL_STAT_ERR_L4,             /* truncated TCP/UDP/ICMP header, TCP doff < 5 */
	WL_STAT_FRAGMENTS,          /* non-first IP fragments (tracked without ports) */
	WL_STAT_BLOCK_SRC,          /* drops by source match */
	WL_STAT_BLOCK_DST,          /* drops by destination match */
	WL_STAT_ALLOWLISTED,        /* blocklist matched but allowlist won */
	WL_STAT_FLOW_NEW,           /* flow entries inserted */
	WL_STAT_FLOW_INSERT_FAIL,   /* flow insert failed (not LRU eviction) */
	WL_STAT_FLOW_DELETED,       /* flow entries removed after their final record */
	WL_STAT_FLOW_SAMPLED_OUT,   /* packets of flows not tracked because of wl_flow_sample */
	WL_STAT_EV_FLOW,            /* flow records written to the ring */
	WL_STAT_EV_FLOW_FAIL,       /* flow record reserve failures (ring full) */
	WL_STAT_EV_SNIPPET,         /* snippets written to the ring */
	WL_STAT_EV_SNIPPET_FAIL,    /* snippet output failures (ring full) */
	WL_STAT_SNIPPET_TRUNC,      /* snippets cut at wl_snippet_len */
	WL_STAT_UNKNOWN_PORT,       /* packets on an interface missing from wl_ports_v1 */
	WL_STAT_SWEEP_RUNS,         /* runs of wl_sweep */
	WL_STAT_SWEEP_EXPIRED,      /* flows exported and removed by wl_sweep */
	WL_STAT_BLOCK_EXPIRED,      /* passed: every block entry that matched was past its expiry */
	WL_STAT_MAX,
};

/* Value of wl_stats_v2 (per CPU). */
struct wl_stats {
	__u64 c[WL_STAT_MAX];
};

/* Flow key. Addresses are 16 bytes, IPv4 as ::ffff:a.b.c.d. Ports are in host
 * byte order; for ICMP/ICMPv6 sport is the type (echo reply folded onto echo
 * request, as Community ID does) and dport the code. In wl_flows_v1 the key
 * is canonical (lower address/port first); in events it is oriented (saddr is
 * the originator for flow records, the sender for snippets). */
struct wl_flow_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u16 vlan_outer; /* VLAN ID of the outer tag, 0 = untagged */
	__u16 vlan_inner; /* VLAN ID of the inner tag, 0 = none */
	__u8 proto;
	__u8 pad[3];
};

/* Flow state bits (wl_flow.state), changed with atomic OR. */
#define WL_ST_FLAGS_ORIG_SHIFT 0  /* bits 0-7: TCP flags seen from the originator */
#define WL_ST_FLAGS_RESP_SHIFT 8  /* bits 8-15: TCP flags seen from the responder */
#define WL_ST_FIN_ORIG (1U << 16)
#define WL_ST_FIN_RESP (1U << 17)
#define WL_ST_LASTFIN_RESP (1U << 18) /* the second FIN came from the responder */
#define WL_ST_RST (1U << 19)
#define WL_ST_DONE (1U << 20)         /* final record claimed; entry about to go */
#define WL_ST_PAYLOAD (1U << 21)      /* first client payload classified */
#define WL_ST_FRAG (1U << 22)         /* flow of non-first fragments (no ports) */

/* Flow table value (wl_flows_v1). packets/bytes are indexed by enum wl_dir. */
struct wl_flow {
	__u64 first_seen_ns;
	__u64 last_seen_ns;
	__u64 last_export_ns; /* last interim record, or first_seen_ns */
	__u64 packets[2];
	__u64 bytes[2];
	__u32 ifindex[2];     /* ingress interface of the last packet per direction */
	__u32 state;          /* WL_ST_* */
	__u32 exports;        /* records emitted so far for this flow */
	__u8 lo_is_orig;      /* 1: the key's saddr (lower endpoint) originated the flow */
	__u8 first_flags;     /* TCP flags of the first packet seen */
	__u8 snip_conts;      /* continuation snippets emitted */
	__u8 pad;
	__u32 snip_seq;       /* TCP sequence number of the first client payload byte */
	__u32 snip_want;      /* client stream bytes wanted (TLS record length, capped) */
	__u32 pad2;
};

/* Header of every ring-buffer event. */
struct wl_event_hdr {
	__u8 version; /* WL_EVENT_VERSION */
	__u8 type;    /* enum wl_event_type */
	__u16 size;   /* bytes of the whole event including this header */
	__u32 cpu;    /* CPU that wrote it */
	__u64 ts_ns;  /* bpf_ktime_get_ns() when written (CLOCK_MONOTONIC) */
};

/* Flow record. Counters are cumulative since the flow started; interim
 * records (reason ACTIVE, final 0) are followed by more. */
struct wl_flow_event {
	struct wl_event_hdr hdr;
	struct wl_flow_key key; /* oriented: saddr/sport = originator */
	__u8 reason;            /* enum wl_reason */
	__u8 final;             /* 1 = last record of this flow */
	__u8 first_flags;
	__u8 tcp_flags[2];      /* OR of TCP flags per direction */
	__u8 frag;              /* 1 = flow of non-first fragments */
	__u8 pad[2];
	__u32 seq;              /* 0-based number of this record within the flow */
	__u32 ifindex[2];
	__u64 first_seen_ns;
	__u64 last_seen_ns;
	__u64 packets[2];
	__u64 bytes[2];
};

/* Payload snippet: fixed header followed by cap_len bytes of data. Only
 * sizeof(header) + cap_len bytes are written to the ring. */
struct wl_snippet_event {
	struct wl_event_hdr hdr;
	struct wl_flow_key key; /* oriented as the packet: saddr = sender */
	__u8 kind;              /* enum wl_snippet_kind */
	__u8 dir;               /* enum wl_dir of the packet */
	__u16 flags;            /* enum wl_snippet_flag */
	__u32 ifindex;
	__u32 offset;           /* byte offset in the client stream (continuations), else 0 */
	__u16 payload_len;      /* L4 payload bytes in the packet */
	__u16 cap_len;          /* bytes in data[] */
	__u8 pad[4];
	__u8 data[WL_SNIPPET_MAX];
};

/* LPM trie keys for the block/allow lists. */
struct wl_lpm4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct wl_lpm6 {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Block/allow list value (wl_block_*_v2, wl_allow*_v2): hit counters,
 * updated atomically, and the entry's lifetime. Written by dataplane/lists.go. */
struct wl_list_val {
	__u64 packets;
	__u64 bytes;
	__u64 added_ns;   /* set by userspace when the entry was written */
	__u64 expires_ns; /* block lists: no match from this bpf_ktime_get_ns() on; 0 = never.
			   * Allowlist entries ignore it. */
};

/* Port registry value (wl_ports_v1). */
struct wl_port {
	__u32 role; /* enum wl_port_role */
	__u32 pad;
};

/* Last sweep summary (wl_sweep_v1[0]), written by wl_sweep. */
struct wl_sweep_state {
	__u64 last_run_ns;
	__u64 live;    /* flow entries present during the last sweep */
	__u64 expired; /* flows the last sweep exported */
	__u64 pending; /* expired flows kept because the ring was full */
	__u64 evicted; /* flows lost to LRU eviction so far (monotonic lower bound, see wl_sweep) */
};
