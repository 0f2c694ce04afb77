/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* parse.h — bounds-checked cursor helpers and the packet parser.
 *
 * Each helper does exactly one bounds check against data_end and advances the
 * cursor; a failed check returns NULL and the caller maps it to a counted
 * parse error. The parser never decides a verdict: parse failures pass. */
#pragma once

#include "consts.h"
#include "structs.h"

struct cursor {
	void *pos;
	void *end;
};

/* cur_pull returns a pointer to the next len bytes and advances past them,
 * or NULL when fewer than len bytes remain. len must be a constant. */
#define cur_pull(c, len)                                            \
	({                                                          \
		void *__p = (c)->pos;                               \
		if (__p + (len) > (c)->end)                         \
			__p = NULL;                                 \
		else                                                \
			(c)->pos = __p + (len);                     \
		__p;                                                \
	})

/* Parsed packet. key is oriented as the packet (saddr = sender). */
struct pkt {
	struct wl_flow_key key;
	__u32 payload_off; /* offset of the L4 payload from the frame start */
	__u32 payload_len; /* L4 payload bytes (0 for ICMP and fragments) */
	__u32 tcp_seq;     /* host order */
	__u8 tcp_flags;
	__u8 frag;         /* non-first fragment: no L4 header */
	__u8 v6;           /* IPv6 (else IPv4, addresses mapped) */
	__u8 have_addrs;   /* addresses parsed (set even if a later header failed) */
};

/* Parse results: WL_PARSE_OK, WL_PARSE_NON_IP, WL_PARSE_ARP, or a wl_stat
 * error index. */
#define WL_PARSE_OK 0
#define WL_PARSE_NON_IP (-1)
#define WL_PARSE_ARP (-2) /* an Ethernet/IPv4 ARP frame; key and payload set */

/* ARP for IPv4 over Ethernet: fixed header + sender/target addresses. */
struct arp_eth_ipv4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 oper;
	__u8 sha[6];
	__u8 spa[4];
	__u8 tha[6];
	__u8 tpa[4];
} __attribute__((packed));

/* ntohs_bounded is bpf_ntohs of a 16-bit length field in a form the 6.1
 * verifier can bound: it forgets the bounds of a byte swap, and a pointer
 * plus an unbounded scalar is refused. The empty asm keeps the compiler
 * from dropping the (for it redundant) mask. */
static __always_inline __u32 ntohs_bounded(__u16 v)
{
	__u32 x = bpf_ntohs(v);
	asm volatile("" : "+r"(x));
	return x & 0xffff;
}

static __always_inline void v4_mapped(__u8 *dst, __be32 a)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &a, 4);
}

/* Fold ICMP echo reply onto echo request so both directions share a key
 * (the mapping Community ID v1 uses for its port fields). */
static __always_inline __u16 icmp_fold(__u8 type, int v6)
{
	if (!v6) {
		if (type == 0) /* echo reply -> echo request */
			return 8;
		if (type == 14) /* timestamp reply */
			return 13;
		if (type == 16) /* info reply */
			return 15;
		if (type == 18) /* mask reply */
			return 17;
	} else {
		if (type == 129) /* echo reply -> echo request */
			return 128;
		if (type == 136) /* neighbor advert -> solicit */
			return 135;
		if (type == 131) /* MLD report -> query */
			return 130;
	}
	return type;
}

static __always_inline int parse_l4(struct cursor *c, struct pkt *p, void *data,
				    void *ip_end, int v6)
{
	if (p->frag) {
		/* Non-first fragment: no L4 header. Tracked by addresses. */
		p->payload_off = c->pos - data;
		return WL_PARSE_OK;
	}
	switch (p->key.proto) {
	case PROTO_TCP: {
		struct tcphdr *th = cur_pull(c, sizeof(*th));
		if (!th)
			return WL_STAT_ERR_L4;
		__u32 doff = th->doff * 4;
		if (doff < sizeof(*th))
			return WL_STAT_ERR_L4;
		p->key.sport = bpf_ntohs(th->source);
		p->key.dport = bpf_ntohs(th->dest);
		p->tcp_flags = ((__u8 *)th)[13];
		p->tcp_seq = bpf_ntohl(th->seq);
		p->payload_off = ((void *)th - data) + doff;
		break;
	}
	case PROTO_UDP: {
		struct udphdr *uh = cur_pull(c, sizeof(*uh));
		if (!uh)
			return WL_STAT_ERR_L4;
		p->key.sport = bpf_ntohs(uh->source);
		p->key.dport = bpf_ntohs(uh->dest);
		p->payload_off = c->pos - data;
		break;
	}
	case PROTO_ICMP:
	case PROTO_ICMP6: {
		/* type, code, checksum */
		__u8 *ih = cur_pull(c, 4);
		if (!ih)
			return WL_STAT_ERR_L4;
		if ((p->key.proto == PROTO_ICMP) == (v6 != 0))
			return WL_PARSE_OK; /* ICMP in IPv6 / ICMPv6 in IPv4: no ports */
		p->key.sport = icmp_fold(ih[0], v6);
		p->key.dport = ih[1];
		p->payload_off = c->pos - data;
		return WL_PARSE_OK;
	}
	default:
		p->payload_off = c->pos - data;
		return WL_PARSE_OK;
	}
	/* TCP/UDP payload length from the IP length (ip_end), which ignores
	 * Ethernet padding of short frames. */
	if (ip_end > data + p->payload_off)
		p->payload_len = ip_end - (data + p->payload_off);
	return WL_PARSE_OK;
}

static __always_inline int parse_ipv4(struct cursor *c, struct pkt *p, void *data,
				      __u32 frame_len)
{
	struct iphdr *iph = cur_pull(c, sizeof(*iph));
	if (!iph)
		return WL_STAT_ERR_IPV4;
	if (iph->version != 4 || iph->ihl < 5)
		return WL_STAT_ERR_IPV4;
	__u32 hlen = iph->ihl * 4;
	/* Skip options: bounded by IHL (<= 60 bytes). */
	void *l4 = (void *)iph + hlen;
	if (l4 > c->end)
		return WL_STAT_ERR_IPV4;
	c->pos = l4;

	v4_mapped(p->key.saddr, iph->saddr);
	v4_mapped(p->key.daddr, iph->daddr);
	p->key.proto = iph->protocol;
	p->have_addrs = 1;
	if (bpf_ntohs(iph->frag_off) & 0x1fff)
		p->frag = 1;

	/* End of the IP datagram. tot_len is 0 or short for some GSO
	 * super-packets; fall back to the frame end then. */
	__u32 l3_off = (void *)iph - data;
	__u32 tot = ntohs_bounded(iph->tot_len);
	void *ip_end = data + frame_len;
	if (tot >= hlen && l3_off + tot < frame_len)
		ip_end = (void *)iph + tot;
	return parse_l4(c, p, data, ip_end, 0);
}

static __always_inline int parse_ipv6(struct cursor *c, struct pkt *p, void *data,
				      __u32 frame_len)
{
	struct ipv6hdr *ip6 = cur_pull(c, sizeof(*ip6));
	if (!ip6)
		return WL_STAT_ERR_IPV6;
	if (ip6->version != 6)
		return WL_STAT_ERR_IPV6;
	__builtin_memcpy(p->key.saddr, &ip6->saddr, 16);
	__builtin_memcpy(p->key.daddr, &ip6->daddr, 16);
	p->v6 = 1;
	p->have_addrs = 1;

	__u8 nh = ip6->nexthdr;
	/* Skip extension headers, bounded. */
	for (int i = 0; i < WL_IPV6_EXT_MAX; i++) {
		if (nh == NEXTHDR_HOP || nh == NEXTHDR_ROUTING || nh == NEXTHDR_DEST ||
		    nh == NEXTHDR_MOBILITY) {
			__u8 *eh = cur_pull(c, 8);
			if (!eh)
				return WL_STAT_ERR_IPV6_EXT;
			nh = eh[0];
			/* (hdrlen + 1) * 8 bytes in all; 8 already pulled. */
			c->pos = eh + ((__u32)eh[1] + 1) * 8;
			if (c->pos > c->end)
				return WL_STAT_ERR_IPV6_EXT;
		} else if (nh == NEXTHDR_AUTH) {
			__u8 *eh = cur_pull(c, 8);
			if (!eh)
				return WL_STAT_ERR_IPV6_EXT;
			nh = eh[0];
			/* (payload len + 2) * 4 bytes. */
			c->pos = eh + ((__u32)eh[1] + 2) * 4;
			if (c->pos > c->end)
				return WL_STAT_ERR_IPV6_EXT;
		} else if (nh == NEXTHDR_FRAGMENT) {
			struct frag_hdr *fh = cur_pull(c, sizeof(*fh));
			if (!fh)
				return WL_STAT_ERR_IPV6_EXT;
			nh = fh->nexthdr;
			if (bpf_ntohs(fh->frag_off) & 0xfff8)
				p->frag = 1;
		} else {
			goto done;
		}
	}
	/* Still an extension header after WL_IPV6_EXT_MAX of them. */
	if (nh == NEXTHDR_HOP || nh == NEXTHDR_ROUTING || nh == NEXTHDR_DEST ||
	    nh == NEXTHDR_MOBILITY || nh == NEXTHDR_AUTH || nh == NEXTHDR_FRAGMENT)
		return WL_STAT_ERR_IPV6_EXT;
done:
	p->key.proto = nh;
	__u32 l3_off = (void *)ip6 - data;
	__u32 plen = ntohs_bounded(ip6->payload_len);
	void *ip_end = data + frame_len;
	if (plen && l3_off + sizeof(*ip6) + plen < frame_len)
		ip_end = (void *)(ip6 + 1) + plen;
	return parse_l4(c, p, data, ip_end, 1);
}

/* parse_frame fills p from the frame at [data, data_end). frame_len is the
 * full length (bpf_xdp_get_buff_len), which can exceed data_end - data for
 * multi-buffer frames. */
static __always_inline int parse_frame(void *data, void *data_end, __u32 frame_len,
				       struct pkt *p)
{
	struct cursor c = { .pos = data, .end = data_end };
	struct ethhdr *eth = cur_pull(&c, sizeof(*eth));
	if (!eth)
		return WL_STAT_ERR_ETH;
	__u16 proto = eth->h_proto;

	for (int i = 0; i < WL_VLAN_MAX; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_hdr *vh = cur_pull(&c, sizeof(*vh));
		if (!vh)
			return WL_STAT_ERR_VLAN;
		__u16 vid = bpf_ntohs(vh->h_vlan_TCI) & 0x0fff;
		if (i == 0)
			p->key.vlan_outer = vid;
		else
			p->key.vlan_inner = vid;
		proto = vh->h_vlan_encapsulated_proto;
	}
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))
		return WL_STAT_ERR_VLAN; /* more tags than WL_VLAN_MAX */

	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(&c, p, data, frame_len);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(&c, p, data, frame_len);
	if (proto == bpf_htons(ETH_P_ARP)) {
		struct arp_eth_ipv4 *a = cur_pull(&c, sizeof(*a));
		if (!a || a->htype != bpf_htons(1) || a->ptype != bpf_htons(ETH_P_IP) || a->hlen != 6 || a->plen != 4)
			return WL_PARSE_NON_IP; /* other ARP flavours: passed, counted as non-IP */
		__be32 spa, tpa;
		__builtin_memcpy(&spa, a->spa, 4);
		__builtin_memcpy(&tpa, a->tpa, 4);
		v4_mapped(p->key.saddr, spa);
		v4_mapped(p->key.daddr, tpa);
		p->key.sport = bpf_ntohs(a->oper);
		p->payload_off = (void *)a - data;
		p->payload_len = sizeof(*a);
		return WL_PARSE_ARP;
	}
	return WL_PARSE_NON_IP;
}
