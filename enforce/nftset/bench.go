package nftset

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/wardline/wardline/enforce"
)

// BenchResult is what LoadBench measured.
type BenchResult struct {
	N, Batch int // elements loaded, elements per Apply

	Load          time.Duration // loading N elements into an empty set, Batch per Apply
	BatchedPerSec float64       // N / Load
	ReadBack      int           // elements Elements returned after the load (must be N)
	Read          time.Duration // one Elements call over the N loaded elements

	Single       int           // single-element Apply calls, on top of the N loaded
	SingleDur    time.Duration // their total time
	SinglePerSec float64       // Single / SingleDur

	Refresh       time.Duration // re-adding all N with a new expiry, Batch per Apply
	RefreshPerSec float64
	Delete        time.Duration // deleting all N+Single, Batch per Apply
	DeletePerSec  float64
}

func (r BenchResult) String() string {
	return fmt.Sprintf("nft: load %d in batches of %d: %v (%.0f/s), read back %d in %v; "+
		"single-element: %d in %v (%.0f/s); refresh: %v (%.0f/s); delete: %v (%.0f/s)",
		r.N, r.Batch, r.Load.Round(time.Millisecond), r.BatchedPerSec, r.ReadBack, r.Read.Round(time.Millisecond),
		r.Single, r.SingleDur.Round(time.Millisecond), r.SinglePerSec,
		r.Refresh.Round(time.Millisecond), r.RefreshPerSec, r.Delete.Round(time.Millisecond), r.DeletePerSec)
}

// The single-element Applies LoadBench makes: at most this many, for at
// most this long (each costs O(n) in the kernel, see Apply).
const (
	benchSingleMax  = 5000
	benchSingleTime = 5 * time.Second
)

// LoadBench measures decisions per second into the kernel in the network
// namespace netnsFd (a throwaway one, lab.UnnamedNetns: nothing else may see
// the table): n source blocks loaded
// batch per Apply, then up to min(n, 5000) more one per Apply (for at most
// 5 s), then the n re-added with a new expiry, then all deleted, batch per
// Apply. The elements are /32s of
// 198.18.0.0/15, then /128s of 2001:db8::/32 beyond its 131072 addresses,
// expiring in ten minutes. It needs CAP_NET_ADMIN and CAP_SYS_ADMIN.
func LoadBench(ctx context.Context, netnsFd, n, batch int) (BenchResult, error) {
	res := BenchResult{N: n, Batch: batch}
	if n <= 0 || batch <= 0 {
		return res, fmt.Errorf("nft load bench: n %d and batch %d must be positive", n, batch)
	}
	b, err := Open(Config{NetNSFd: netnsFd, Create: true})
	if err != nil {
		return res, fmt.Errorf("nft load bench: %w", err)
	}
	defer b.Close()

	single := min(n, benchSingleMax)
	exp := time.Now().Add(10 * time.Minute)
	els := make([]enforce.Element, n+single)
	for i := range els {
		els[i] = enforce.Element{Prefix: benchPrefix(i), Dir: enforce.Src, Expires: exp}
	}
	inBatches := func(what string, list []enforce.Element, del bool) (time.Duration, error) {
		start := time.Now()
		for i := 0; i < len(list); i += batch {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			chunk := list[i:min(i+batch, len(list))]
			var err error
			if del {
				err = b.Apply(nil, chunk)
			} else {
				err = b.Apply(chunk, nil)
			}
			if err != nil {
				return 0, fmt.Errorf("%s: %w", what, err)
			}
		}
		return time.Since(start), nil
	}
	perSec := func(k int, d time.Duration) float64 { return float64(k) / d.Seconds() }

	if res.Load, err = inBatches("load", els[:n], false); err != nil {
		return res, fmt.Errorf("nft load bench: %w", err)
	}
	res.BatchedPerSec = perSec(n, res.Load)
	start := time.Now()
	got, err := b.Elements()
	if err != nil {
		return res, fmt.Errorf("nft load bench: read back: %w", err)
	}
	res.Read, res.ReadBack = time.Since(start), len(got)

	start = time.Now()
	for _, e := range els[n:] {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := b.Apply([]enforce.Element{e}, nil); err != nil {
			return res, fmt.Errorf("nft load bench: single add %v: %w", e, err)
		}
		res.Single++
		if time.Since(start) > benchSingleTime {
			break
		}
	}
	res.SingleDur = time.Since(start)
	res.SinglePerSec = perSec(res.Single, res.SingleDur)
	els = els[:n+res.Single]

	exp = exp.Add(time.Minute)
	for i := range els[:n] {
		els[i].Expires = exp
	}
	if res.Refresh, err = inBatches("refresh", els[:n], false); err != nil {
		return res, fmt.Errorf("nft load bench: %w", err)
	}
	res.RefreshPerSec = perSec(n, res.Refresh)
	if res.Delete, err = inBatches("delete", els, true); err != nil {
		return res, fmt.Errorf("nft load bench: %w", err)
	}
	res.DeletePerSec = perSec(len(els), res.Delete)
	return res, nil
}

func benchPrefix(i int) netip.Prefix {
	if i < 1<<17 {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)}), 32)
	}
	i -= 1 << 17
	return netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 12: byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}), 128)
}
