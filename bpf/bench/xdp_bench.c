//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* xdp_bench.c — helpers for the fast-path benchmarks (appliance/bench), not
 * part of the appliance:
 *   xdp_gen        a packet generator: run with BPF_PROG_TEST_RUN in live-frame
 *                  mode, it redirects each frame out of gen_ifindex. Frames
 *                  reach the veth peer as xdp_frames (no skb), as frames from
 *                  a NIC reach a driver's XDP hook.
 *   xdp_pass       the smallest XDP program: the cost floor of attaching any
 *                  program at all, to separate it from wl_xdp's own cost.
 *   xdp_pass_frags the same, multi-buffer aware (like wl_xdp). */

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set at load time. */
volatile const __u32 gen_ifindex = 0; /* device to send the frames out of */
volatile const __u32 gen_flows = 0;   /* >0: walk the UDP source port over this many values */

/* Read by Go. The generator runs on one CPU at a time (PROG_TEST_RUN
 * disables migration), so plain increments are exact. */
__u64 gen_frames = 0; /* frames handed to bpf_redirect */
__u32 gen_next = 0;

/* Offset of the UDP source port in an untagged IPv4 frame without options,
 * which is what the Go side builds. */
#define GEN_SPORT_OFF (14 + 20)

SEC("xdp")
int xdp_gen(struct xdp_md *ctx)
{
	if (gen_flows) {
		/* Live-frame pages are recycled with whatever the last run
		 * wrote, so the port is rewritten on every run. The Go side
		 * sends a zero UDP checksum (valid for IPv4), so nothing else
		 * needs fixing. */
		void *data = (void *)(long)ctx->data;
		void *end = (void *)(long)ctx->data_end;
		__be16 *sport = data + GEN_SPORT_OFF;
		if ((void *)(sport + 1) <= end) {
			*sport = bpf_htons(1024 + gen_next % gen_flows);
			gen_next++;
		}
	}
	gen_frames++;
	return bpf_redirect(gen_ifindex, 0);
}

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp.frags")
int xdp_pass_frags(struct xdp_md *ctx)
{
	return XDP_PASS;
}
