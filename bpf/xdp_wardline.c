//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* xdp_wardline.c — the Wardline fast path, attached to both bridge ports.
 *
 * Per packet: parse -> blocklist (allowlist wins) -> flow accounting ->
 * snippets/records to the ring buffer -> counted verdict. Every exit goes
 * through the `out:` label, which counts the verdict. Anything the parser
 * cannot understand passes (fail-open) and is counted by reason.
 *
 * wl_sweep is run by the daemon through BPF_PROG_TEST_RUN every sweep
 * interval; it exports and removes idle and closed flows, so that every flow
 * record, whatever triggered it, leaves through the same ring buffer. */

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "parse.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Referenced so that bpf2go emits Go types for them (-type). */
const struct wl_flow_event *unused_flow_event __attribute__((unused));
const struct wl_snippet_event *unused_snippet_event __attribute__((unused));
const enum wl_stat *unused_stat __attribute__((unused));
const enum wl_reason *unused_reason __attribute__((unused));
const enum wl_snippet_kind *unused_kind __attribute__((unused));
const enum wl_snippet_flag *unused_sflag __attribute__((unused));
const enum wl_event_type *unused_evtype __attribute__((unused));
const enum wl_port_role *unused_role __attribute__((unused));

#define WL_BOTH_FIN (WL_ST_FIN_ORIG | WL_ST_FIN_RESP)

static __always_inline struct wl_stats *stats_get(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&wl_stats_v2, &zero);
}

#define STAT_ADD(st, idx, n)                  \
	do {                                  \
		if (st)                       \
			(st)->c[idx] += (n);  \
	} while (0)

/* ---- keys ---------------------------------------------------------------- */

static __always_inline int is_icmp(__u8 proto)
{
	return proto == PROTO_ICMP || proto == PROTO_ICMP6;
}

/* addr_cmp orders two 16-byte addresses (any consistent total order will
 * do: it only picks the canonical orientation of a flow key). */
static __always_inline int addr_cmp(const __u8 *a, const __u8 *b)
{
	__u64 a0, a1, b0, b1;
	__builtin_memcpy(&a0, a, 8);
	__builtin_memcpy(&a1, a + 8, 8);
	__builtin_memcpy(&b0, b, 8);
	__builtin_memcpy(&b1, b + 8, 8);
	if (a0 != b0)
		return a0 < b0 ? -1 : 1;
	if (a1 != b1)
		return a1 < b1 ? -1 : 1;
	return 0;
}

/* flip swaps the endpoints of k; ICMP type/code stay where they are. */
static __always_inline void flip(struct wl_flow_key *dst, const struct wl_flow_key *src)
{
	__builtin_memcpy(dst->saddr, src->daddr, 16);
	__builtin_memcpy(dst->daddr, src->saddr, 16);
	if (is_icmp(src->proto)) {
		dst->sport = src->sport;
		dst->dport = src->dport;
	} else {
		dst->sport = src->dport;
		dst->dport = src->sport;
	}
	dst->vlan_outer = src->vlan_outer;
	dst->vlan_inner = src->vlan_inner;
	dst->proto = src->proto;
	dst->pad[0] = 0;
	dst->pad[1] = 0;
	dst->pad[2] = 0;
}

/* canonical writes the table key for p and returns 1 if the packet's sender
 * is the key's (lower) saddr endpoint. */
static __always_inline int canonical(struct wl_flow_key *ck, const struct pkt *p)
{
	int c = addr_cmp(p->key.saddr, p->key.daddr);
	if (c < 0 || (c == 0 && (is_icmp(p->key.proto) || p->key.sport <= p->key.dport))) {
		*ck = p->key;
		return 1;
	}
	flip(ck, &p->key);
	return 0;
}

static __always_inline __u32 key_hash(const struct wl_flow_key *k)
{
	__u32 w[11];
	__builtin_memcpy(w, k, sizeof(w));
	__u32 h = 0;
#pragma unroll
	for (int i = 0; i < 11; i++)
		h = (h ^ w[i]) * 0x9E3779B1;
	return h ^ (h >> 16);
}

/* ---- ring-buffer output ---------------------------------------------------- */

static __always_inline void hdr_fill(struct wl_event_hdr *h, __u8 type, __u16 size, __u64 now)
{
	h->version = WL_EVENT_VERSION;
	h->type = type;
	h->size = size;
	h->cpu = bpf_get_smp_processor_id();
	h->ts_ns = now;
}

/* rb_flags chooses the wakeup for a ring-buffer write of size bytes. Waking
 * the reader on every record (the default while it keeps up) halves what the
 * program can produce; instead the reader is woken once when pending data
 * crosses wl_wakeup_bytes, and otherwise polls every few milliseconds
 * (dataplane/reader.go), which bounds the delay of a quiet ring. */
static __always_inline __u64 rb_flags(__u32 size)
{
	__u64 avail = bpf_ringbuf_query(&wl_events_v1, BPF_RB_AVAIL_DATA);
	if (avail < wl_wakeup_bytes && avail + size >= wl_wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

/* emit_flow writes a flow record; returns 0 on success, -1 if the ring was
 * full (counted). The caller decides what a failure means for the entry. */
static __always_inline int emit_flow(struct wl_flow *f, const struct wl_flow_key *ck, __u8 reason,
				     __u8 final, __u64 now, struct wl_stats *st)
{
	__u64 wake = rb_flags(sizeof(struct wl_flow_event));
	struct wl_flow_event *e = bpf_ringbuf_reserve(&wl_events_v1, sizeof(*e), 0);
	if (!e) {
		STAT_ADD(st, WL_STAT_EV_FLOW_FAIL, 1);
		return -1;
	}
	hdr_fill(&e->hdr, WL_EV_FLOW, sizeof(*e), now);
	if (f->lo_is_orig)
		e->key = *ck;
	else
		flip(&e->key, ck);
	__u32 state = f->state;
	e->reason = reason;
	e->final = final;
	e->first_flags = f->first_flags;
	e->tcp_flags[0] = state >> WL_ST_FLAGS_ORIG_SHIFT;
	e->tcp_flags[1] = state >> WL_ST_FLAGS_RESP_SHIFT;
	e->frag = (state & WL_ST_FRAG) ? 1 : 0;
	e->pad[0] = 0;
	e->pad[1] = 0;
	e->seq = __sync_fetch_and_add(&f->exports, 1);
	e->ifindex[0] = f->ifindex[0];
	e->ifindex[1] = f->ifindex[1];
	e->first_seen_ns = f->first_seen_ns;
	e->last_seen_ns = f->last_seen_ns;
	e->packets[0] = f->packets[0];
	e->packets[1] = f->packets[1];
	e->bytes[0] = f->bytes[0];
	e->bytes[1] = f->bytes[1];
	bpf_ringbuf_submit(e, wake);
	STAT_ADD(st, WL_STAT_EV_FLOW, 1);
	return 0;
}

/* finish claims the final record of a flow (once, across CPUs), writes it and
 * removes the entry. If the ring is full the claim is released and the
 * sweeper retries after wl_close_timeout_ns, so the record is late, not lost. */
static __always_inline void finish(struct wl_flow *f, const struct wl_flow_key *ck, __u8 reason,
				   __u64 now, struct wl_stats *st)
{
	__u32 old = __sync_fetch_and_or(&f->state, WL_ST_DONE);
	if (old & WL_ST_DONE)
		return;
	if (emit_flow(f, ck, reason, 1, now, st) < 0) {
		__sync_fetch_and_and(&f->state, ~WL_ST_DONE);
		return;
	}
	if (bpf_map_delete_elem(&wl_flows_v1, ck) == 0)
		STAT_ADD(st, WL_STAT_FLOW_DELETED, 1);
}

_Static_assert((WL_SNIPPET_MAX & (WL_SNIPPET_MAX - 1)) == 0, "emit_snippet masks with WL_SNIPPET_MAX - 1");

static __always_inline void emit_snippet(struct xdp_md *ctx, const struct pkt *p, __u8 kind,
					 __u8 dir, __u32 offset, __u16 flags, __u64 now,
					 struct wl_stats *st)
{
	__u32 zero = 0;
	struct wl_snippet_event *s = bpf_map_lookup_elem(&wl_scratch, &zero);
	if (!s)
		return;
	__u32 cap = p->payload_len;
	if (cap > wl_snippet_len) {
		cap = wl_snippet_len;
		flags |= WL_SNIPF_TRUNCATED;
	}
	if (cap > WL_SNIPPET_MAX)
		cap = WL_SNIPPET_MAX;
	if (cap < 1)
		return;
	/* The same value, in a form older verifiers can bound: 6.1's does not
	 * learn cap >= 1 from the 32-bit test above and refuses the load as
	 * possibly zero-length (WL_SNIPPET_MAX is a power of two). */
	cap = ((cap - 1) & (WL_SNIPPET_MAX - 1)) + 1;
	if (bpf_xdp_load_bytes(ctx, p->payload_off, s->data, cap) < 0) {
		STAT_ADD(st, WL_STAT_EV_SNIPPET_FAIL, 1);
		return;
	}
	__u32 size = offsetof(struct wl_snippet_event, data) + cap;
	hdr_fill(&s->hdr, WL_EV_SNIPPET, size, now);
	s->key = p->key;
	s->kind = kind;
	s->dir = dir;
	s->flags = flags;
	s->ifindex = ctx->ingress_ifindex;
	s->offset = offset;
	s->payload_len = p->payload_len > 0xffff ? 0xffff : p->payload_len;
	s->cap_len = cap;
	__builtin_memset(s->pad, 0, sizeof(s->pad));
	if (bpf_ringbuf_output(&wl_events_v1, s, size, rb_flags(size)) < 0) {
		STAT_ADD(st, WL_STAT_EV_SNIPPET_FAIL, 1);
		return;
	}
	STAT_ADD(st, WL_STAT_EV_SNIPPET, 1);
	if (flags & WL_SNIPF_TRUNCATED)
		STAT_ADD(st, WL_STAT_SNIPPET_TRUNC, 1); /* only snippets delivered */
}

/* ---- blocklist ------------------------------------------------------------- */

static __always_inline struct wl_list_val *lpm(void *map, const __u8 *addr, int v6)
{
	if (v6) {
		struct wl_lpm6 k = { .prefixlen = 128 };
		__builtin_memcpy(k.addr, addr, 16);
		return bpf_map_lookup_elem(map, &k);
	}
	struct wl_lpm4 k = { .prefixlen = 32 };
	__builtin_memcpy(k.addr, addr + 12, 4);
	return bpf_map_lookup_elem(map, &k);
}

/* block_match looks addr up in a block trie. An entry past its expiry is no
 * match (*expired is set); the clock is read only when an entry matched, so
 * the common path does not pay for it. The trie returns only the longest
 * match, so an expired entry also hides shorter live prefixes around it
 * until userspace removes it (enforce/xdpset does when it reads the list). */
static __always_inline struct wl_list_val *block_match(void *map, const __u8 *addr, int v6, int *expired)
{
	struct wl_list_val *b = lpm(map, addr, v6);
	if (b && b->expires_ns && b->expires_ns <= bpf_ktime_get_ns()) {
		*expired = 1;
		return NULL;
	}
	return b;
}

/* blocked returns 1 if the packet must be dropped. The allowlist takes
 * precedence; it is consulted only when a live block entry matched, so the
 * common case costs two lookups (free while a trie is empty). */
static __always_inline int blocked(const struct pkt *p, __u32 len, struct wl_stats *st)
{
	int v6 = p->v6;
	int expired = 0;
	__u32 why = WL_STAT_BLOCK_SRC;
	struct wl_list_val *b = block_match(v6 ? (void *)&wl_block_src6_v2 : (void *)&wl_block_src4_v2,
					    p->key.saddr, v6, &expired);
	if (!b) {
		why = WL_STAT_BLOCK_DST;
		b = block_match(v6 ? (void *)&wl_block_dst6_v2 : (void *)&wl_block_dst4_v2,
				p->key.daddr, v6, &expired);
	}
	if (!b) {
		if (expired)
			STAT_ADD(st, WL_STAT_BLOCK_EXPIRED, 1);
		return 0;
	}
	void *allow = v6 ? (void *)&wl_allow6_v2 : (void *)&wl_allow4_v2;
	struct wl_list_val *a = lpm(allow, p->key.saddr, v6);
	if (!a)
		a = lpm(allow, p->key.daddr, v6);
	if (a) {
		__sync_fetch_and_add(&a->packets, 1);
		__sync_fetch_and_add(&a->bytes, len);
		STAT_ADD(st, WL_STAT_ALLOWLISTED, 1);
		return 0;
	}
	__sync_fetch_and_add(&b->packets, 1);
	__sync_fetch_and_add(&b->bytes, len);
	STAT_ADD(st, why, 1);
	return 1;
}

/* ---- flow accounting ------------------------------------------------------- */

static __always_inline int is_http_method(const __u8 *b)
{
	__u32 w;
	__builtin_memcpy(&w, b, 4);
#define M(a, b_, c, d) ((__u32)(a) | (__u32)(b_) << 8 | (__u32)(c) << 16 | (__u32)(d) << 24)
	return w == M('G', 'E', 'T', ' ') || w == M('P', 'O', 'S', 'T') ||
	       w == M('H', 'E', 'A', 'D') || w == M('P', 'U', 'T', ' ') ||
	       w == M('D', 'E', 'L', 'E') || w == M('O', 'P', 'T', 'I') ||
	       w == M('C', 'O', 'N', 'N') || w == M('P', 'A', 'T', 'C') ||
	       w == M('T', 'R', 'A', 'C');
#undef M
}

/* client_payload handles TCP payload from the originator: classify the first
 * one (TLS ClientHello / HTTP request / anything else) and follow a ClientHello that spans
 * several segments with continuation snippets (offsets from TCP sequence
 * numbers, so detect/ can reassemble in order and drop retransmissions). */
static __always_inline void client_payload(struct xdp_md *ctx, struct wl_flow *f, const struct pkt *p,
					   __u64 now, struct wl_stats *st)
{
	if (!(f->state & WL_ST_PAYLOAD)) {
		__u32 old = __sync_fetch_and_or(&f->state, WL_ST_PAYLOAD);
		if (old & WL_ST_PAYLOAD)
			return;
		__u8 peek[WL_PEEK_LEN] = {};
		if (p->payload_len < WL_PEEK_LEN ||
		    bpf_xdp_load_bytes(ctx, p->payload_off, peek, WL_PEEK_LEN) < 0) {
			emit_snippet(ctx, p, WL_SNIP_PAYLOAD, WL_DIR_ORIG, 0, 0, now, st);
			return;
		}
		if (peek[0] == 0x16 && peek[1] == 0x03 && peek[5] == 0x01) {
			__u32 want = 5 + ((__u32)peek[3] << 8 | peek[4]);
			if (want > wl_snippet_len)
				want = wl_snippet_len;
			if (want > p->payload_len) {
				f->snip_seq = p->tcp_seq;
				f->snip_want = want;
			}
			emit_snippet(ctx, p, WL_SNIP_TLS, WL_DIR_ORIG, 0, 0, now, st);
		} else if (is_http_method(peek)) {
			emit_snippet(ctx, p, WL_SNIP_HTTP, WL_DIR_ORIG, 0, 0, now, st);
		} else {
			emit_snippet(ctx, p, WL_SNIP_PAYLOAD, WL_DIR_ORIG, 0, 0, now, st);
		}
		return;
	}
	if (!f->snip_want)
		return;
	__u32 off = p->tcp_seq - f->snip_seq;
	if (off == 0 || off >= f->snip_want)
		return;
	if (f->snip_conts + 1 >= WL_SNIPPET_CONT_MAX || off + p->payload_len >= f->snip_want)
		f->snip_want = 0; /* this is the last piece we follow */
	f->snip_conts++;
	emit_snippet(ctx, p, WL_SNIP_TLS, WL_DIR_ORIG, off, WL_SNIPF_CONT, now, st);
}

static __always_inline void track(struct xdp_md *ctx, struct pkt *p, __u32 len, struct wl_stats *st)
{
	struct wl_flow_key ck;
	int sender_is_lo = canonical(&ck, p);
	__u64 now = bpf_ktime_get_ns();

	/* Sampling is decided before the lookup: a sampled-out flow never has
	 * an entry, and the lookup is most of this function's cost (a cache
	 * miss per packet on a busy table, ~330 ns measured). */
	if (wl_flow_sample > 1 && key_hash(&ck) % wl_flow_sample) {
		STAT_ADD(st, WL_STAT_FLOW_SAMPLED_OUT, 1);
		return;
	}
	struct wl_flow *f = bpf_map_lookup_elem(&wl_flows_v1, &ck);
	if (!f) {
		struct wl_flow nf = {};
		nf.first_seen_ns = now;
		nf.last_seen_ns = now;
		nf.last_export_ns = now;
		nf.lo_is_orig = sender_is_lo;
		/* A SYN-ACK first means we missed the SYN: the receiver
		 * originated the connection. */
		if (p->key.proto == PROTO_TCP && (p->tcp_flags & (TCPF_SYN | TCPF_ACK)) == (TCPF_SYN | TCPF_ACK))
			nf.lo_is_orig = !sender_is_lo;
		nf.first_flags = p->tcp_flags;
		if (p->frag)
			nf.state = WL_ST_FRAG;
		long err = bpf_map_update_elem(&wl_flows_v1, &ck, &nf, BPF_NOEXIST);
		if (err == 0)
			STAT_ADD(st, WL_STAT_FLOW_NEW, 1);
		f = bpf_map_lookup_elem(&wl_flows_v1, &ck);
		if (!f) {
			STAT_ADD(st, WL_STAT_FLOW_INSERT_FAIL, 1);
			return;
		}
	}

	__u8 dir = (sender_is_lo == f->lo_is_orig) ? WL_DIR_ORIG : WL_DIR_RESP;
	__sync_fetch_and_add(&f->packets[dir & 1], 1);
	__sync_fetch_and_add(&f->bytes[dir & 1], len);
	f->last_seen_ns = now;
	f->ifindex[dir & 1] = ctx->ingress_ifindex;

	__u16 sport = p->key.sport, dport = p->key.dport;
	int dns = (p->key.proto == PROTO_UDP || p->key.proto == PROTO_TCP) && !p->frag &&
		  (sport == DNS_PORT || dport == DNS_PORT);
	if (dns && p->payload_len)
		emit_snippet(ctx, p, WL_SNIP_DNS, dir, 0, 0, now, st);
	/* DHCPv4 (BOOTP ports): host names for passive discovery. */
	if (p->key.proto == PROTO_UDP && !p->frag && p->payload_len &&
	    (sport == DHCP_SERVER_PORT || dport == DHCP_SERVER_PORT || sport == DHCP_CLIENT_PORT || dport == DHCP_CLIENT_PORT))
		emit_snippet(ctx, p, WL_SNIP_DHCP, dir, 0, 0, now, st);

	if (p->key.proto == PROTO_TCP && !p->frag) {
		__u8 fl = p->tcp_flags;
		__u32 bits = (__u32)fl << (dir == WL_DIR_ORIG ? WL_ST_FLAGS_ORIG_SHIFT : WL_ST_FLAGS_RESP_SHIFT);
		if (fl & TCPF_FIN)
			bits |= dir == WL_DIR_ORIG ? WL_ST_FIN_ORIG : WL_ST_FIN_RESP;
		if (fl & TCPF_RST)
			bits |= WL_ST_RST;
		__u32 old = __sync_fetch_and_or(&f->state, bits);
		__u32 cur = old | bits;

		if (!dns && dir == WL_DIR_ORIG && p->payload_len)
			client_payload(ctx, f, p, now, st);

		if (fl & TCPF_RST) {
			finish(f, &ck, WL_REASON_RST, now, st);
			return;
		}
		if ((cur & WL_BOTH_FIN) == WL_BOTH_FIN) {
			if ((old & WL_BOTH_FIN) != WL_BOTH_FIN) {
				/* This packet completed the close. Remember
				 * who sent the second FIN: the ACK of that
				 * FIN, from the other side, ends the flow. */
				if (dir == WL_DIR_RESP)
					__sync_fetch_and_or(&f->state, WL_ST_LASTFIN_RESP);
			} else if (!(fl & TCPF_FIN) && (fl & TCPF_ACK)) {
				__u8 last = (cur & WL_ST_LASTFIN_RESP) ? WL_DIR_RESP : WL_DIR_ORIG;
				if (dir != last) {
					finish(f, &ck, WL_REASON_FIN, now, st);
					return;
				}
			}
		}
	}

	/* Interim record for long flows; the CAS makes one CPU the exporter. */
	__u64 le = f->last_export_ns;
	if (now > le && now - le >= wl_active_timeout_ns && !(f->state & WL_ST_DONE)) {
		if (__sync_val_compare_and_swap(&f->last_export_ns, le, now) == le)
			emit_flow(f, &ck, WL_REASON_ACTIVE, 0, now, st);
	}
}

/* ---- programs --------------------------------------------------------------- */

SEC("xdp.frags")
int wl_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 len = bpf_xdp_get_buff_len(ctx);
	__u32 verdict = XDP_PASS;
	struct wl_stats *st = stats_get();
	struct pkt p = {};

	STAT_ADD(st, WL_STAT_RX_PACKETS, 1);
	STAT_ADD(st, WL_STAT_RX_BYTES, len);

	__u32 ifindex = ctx->ingress_ifindex;
	if (!bpf_map_lookup_elem(&wl_ports_v1, &ifindex))
		STAT_ADD(st, WL_STAT_UNKNOWN_PORT, 1);

	int rc = parse_frame(data, data_end, len, &p);
	if (rc == WL_PARSE_NON_IP) {
		STAT_ADD(st, WL_STAT_NON_IP, 1);
		goto out;
	}
	if (rc == WL_PARSE_ARP) {
		/* ARP is never blocked (that would break the LAN) but is
		 * reported: host sweeps and spoofing show up there. */
		STAT_ADD(st, WL_STAT_NON_IP, 1);
		emit_snippet(ctx, &p, WL_SNIP_ARP, WL_DIR_ORIG, 0, 0, bpf_ktime_get_ns(), st);
		goto out;
	}
	/* The blocklist applies whenever the addresses are known, even if a
	 * later header is malformed: garbage must not be a way around it. */
	if (p.have_addrs && blocked(&p, len, st)) {
		verdict = XDP_DROP;
		goto out;
	}
	if (rc != WL_PARSE_OK) {
		if (rc > 0 && rc < WL_STAT_MAX)
			STAT_ADD(st, rc, 1);
		goto out;
	}
	if (p.frag)
		STAT_ADD(st, WL_STAT_FRAGMENTS, 1);
	track(ctx, &p, len, st);
out:
	if (verdict == XDP_DROP) {
		STAT_ADD(st, WL_STAT_DROP, 1);
		STAT_ADD(st, WL_STAT_DROP_BYTES, len);
	} else {
		STAT_ADD(st, WL_STAT_PASS, 1);
	}
	return verdict;
}

struct sweep_ctx {
	__u64 now;
	__u64 live;
	__u64 expired;
	__u64 pending;
	__u64 expired_deleted; /* expired flows whose delete succeeded */
	struct wl_stats *st;
};

static long sweep_cb(void *map, struct wl_flow_key *key, struct wl_flow *f, struct sweep_ctx *sc)
{
	sc->live++;
	__u32 state = f->state;
	if (state & WL_ST_DONE)
		return 0;
	__u64 timeout = wl_idle_timeout_ns;
	__u8 reason = WL_REASON_IDLE;
	if (state & WL_ST_RST) {
		timeout = wl_close_timeout_ns;
		reason = WL_REASON_RST;
	} else if ((state & WL_BOTH_FIN) == WL_BOTH_FIN) {
		timeout = wl_close_timeout_ns;
		reason = WL_REASON_FIN;
	}
	__u64 last = f->last_seen_ns;
	if (last >= sc->now || sc->now - last < timeout)
		return 0;
	__u32 old = __sync_fetch_and_or(&f->state, WL_ST_DONE);
	if (old & WL_ST_DONE)
		return 0;
	if (emit_flow(f, key, reason, 1, sc->now, sc->st) < 0) {
		/* Ring full: keep the flow, retry next sweep. */
		__sync_fetch_and_and(&f->state, ~WL_ST_DONE);
		sc->pending++;
		return 0;
	}
	if (bpf_map_delete_elem(&wl_flows_v1, key) == 0) {
		STAT_ADD(sc->st, WL_STAT_FLOW_DELETED, 1);
		sc->expired_deleted++;
	}
	sc->expired++;
	return 0;
}

/* sum_stat adds counter idx over all CPUs. */
static __always_inline __u64 sum_stat(__u32 idx)
{
	__u32 zero = 0;
	__u64 sum = 0;
	for (__u32 cpu = 0; cpu < WL_MAX_CPUS; cpu++) {
		struct wl_stats *s = bpf_map_lookup_percpu_elem(&wl_stats_v2, &zero, cpu);
		if (!s)
			break;
		if (idx < WL_STAT_MAX)
			sum += s->c[idx];
	}
	return sum;
}

SEC("xdp")
int wl_sweep(struct xdp_md *ctx)
{
	struct sweep_ctx sc = {};
	sc.now = bpf_ktime_get_ns();
	sc.st = stats_get();
	__u64 created = sum_stat(WL_STAT_FLOW_NEW);
	__u64 deleted_before = sum_stat(WL_STAT_FLOW_DELETED);
	bpf_for_each_map_elem(&wl_flows_v1, sweep_cb, &sc, 0);
	__u64 deleted = sum_stat(WL_STAT_FLOW_DELETED) - deleted_before;

	/* LRU evictions are silent; derive them. An entry created before the
	 * walk was either deleted with a count before it (deleted_before),
	 * visited by the walk (live, including those this sweep removes), or
	 * deleted by the packet path during the walk (deleted minus this
	 * sweep's own deletes), or evicted. Races during the walk can only
	 * make the estimate low, so the kept value is the running maximum: a
	 * monotonic lower bound. */
	__s64 est = (__s64)created - (__s64)deleted_before - (__s64)sc.live -
		    (__s64)(deleted - sc.expired_deleted);

	__u32 zero = 0;
	struct wl_sweep_state *ss = bpf_map_lookup_elem(&wl_sweep_v1, &zero);
	if (ss) {
		ss->last_run_ns = sc.now;
		ss->live = sc.live;
		ss->expired = sc.expired;
		ss->pending = sc.pending;
		if (est > 0 && (__u64)est > ss->evicted)
			ss->evicted = est;
	}
	STAT_ADD(sc.st, WL_STAT_SWEEP_RUNS, 1);
	STAT_ADD(sc.st, WL_STAT_SWEEP_EXPIRED, sc.expired);
	return XDP_PASS;
}
