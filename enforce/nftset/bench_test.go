package nftset

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/wardline/wardline/lab"
)

// TestLoadBench runs LoadBench small (WARDLINE_NFT_BENCH_N elements,
// default 5000, in batches of WARDLINE_NFT_BENCH_BATCH, default 1000) and
// checks that everything loaded was read back.
func TestLoadBench(t *testing.T) {
	needRoot(t)
	n := 5000
	if v, err := strconv.Atoi(os.Getenv("WARDLINE_NFT_BENCH_N")); err == nil && v > 0 {
		n = v
	}
	batch := 1000
	if v, err := strconv.Atoi(os.Getenv("WARDLINE_NFT_BENCH_BATCH")); err == nil && v > 0 {
		batch = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns, err := lab.UnnamedNetns()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	r, err := LoadBench(ctx, int(ns), n, batch)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r)
	if r.ReadBack != n {
		t.Errorf("read back %d elements after loading %d", r.ReadBack, n)
	}
	if r.Single < 1 || r.Single > min(n, benchSingleMax) || r.SinglePerSec <= 0 || r.BatchedPerSec <= 0 || r.RefreshPerSec <= 0 || r.DeletePerSec <= 0 {
		t.Errorf("incomplete result: %+v", r)
	}
}
