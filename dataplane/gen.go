package dataplane

// The fast path lives in bpf/; bpf2go compiles it and emits wl_bpfel.go with
// the object embedded and Go mirrors of the shared structs. The generated
// files are committed so builds need no clang; CI regenerates them and fails
// on any difference. vmlinux.h is committed too (make vmlinux refreshes it).
//
//go:generate go tool bpf2go -tags linux -target bpfel -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3" -type wl_flow_event -type wl_snippet_event -type wl_event_hdr -type wl_stat -type wl_reason -type wl_snippet_kind -type wl_snippet_flag -type wl_event_type -type wl_port_role -type wl_sweep_state bpf ../bpf/xdp_wardline.c -- -I../bpf/include -I../bpf
