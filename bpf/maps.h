/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* maps.h — every map of the fast path, one purpose comment each.
 *
 * Maps that carry state across daemon restarts are pinned by name under the
 * pin directory (dataplane/loader.go); their names carry a layout version so
 * that a new layout gets a new map instead of misreading an old one.
 * max_entries of the flow table and the ring are overridden at load time
 * from the config; the values here are the defaults. */
#pragma once

#include "structs.h"

#ifndef LIBBPF_PIN_BY_NAME
#define LIBBPF_PIN_BY_NAME 1
#endif

/* Per-flow state, bidirectional, canonical key. LRU: under pressure the least
 * recently used flow is evicted; evictions are derived and exported by Go
 * (inserts - deletes - live, see dataplane/stats.go). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct wl_flow_key);
	__type(value, struct wl_flow);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wl_flows_v1 SEC(".maps");

/* Events to userspace: flow records and payload snippets. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wl_events_v1 SEC(".maps");

/* Per-CPU counters: one element holding every enum wl_stat counter, so the
 * hot path does one lookup per packet and plain (per-CPU) increments.
 * _v2: WL_STAT_BLOCK_EXPIRED made the value longer. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wl_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wl_stats_v2 SEC(".maps");

/* Bridge ports this program is attached to: ifindex -> role. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct wl_port);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wl_ports_v1 SEC(".maps");

/* Blocklist: drop when the source (src tries) or destination (dst tries)
 * falls in a prefix whose entry has not expired. LPM tries must be created
 * without preallocation. _v2: wl_list_val gained expires_ns (the loader
 * carries _v1 entries over and removes the old pins). */
#define WL_LPM_MAP(name, keytype)                        \
	struct {                                         \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);     \
		__uint(max_entries, 262144);             \
		__type(key, keytype);                    \
		__type(value, struct wl_list_val);       \
		__uint(map_flags, BPF_F_NO_PREALLOC);    \
		__uint(pinning, LIBBPF_PIN_BY_NAME);     \
	} name SEC(".maps")

WL_LPM_MAP(wl_block_src4_v2, struct wl_lpm4);
WL_LPM_MAP(wl_block_dst4_v2, struct wl_lpm4);
WL_LPM_MAP(wl_block_src6_v2, struct wl_lpm6);
WL_LPM_MAP(wl_block_dst6_v2, struct wl_lpm6);

/* Allowlist (never block): a packet whose source or destination is in here
 * passes even when the blocklist matches it. */
WL_LPM_MAP(wl_allow4_v2, struct wl_lpm4);
WL_LPM_MAP(wl_allow6_v2, struct wl_lpm6);

/* Summary of the last sweep, written by wl_sweep. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wl_sweep_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wl_sweep_v1 SEC(".maps");

/* Per-CPU scratch space to assemble a snippet before bpf_ringbuf_output
 * (too large for the 512-byte stack). Not pinned: no state. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wl_snippet_event);
} wl_scratch SEC(".maps");
