package bench

// The benchmark-only BPF programs (bpf/bench/xdp_bench.c); see dataplane/gen.go.
//
//go:generate go tool bpf2go -tags linux -target bpfel -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3" xbench ../../bpf/bench/xdp_bench.c -- -I../../bpf/include
