package pcap

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/wardline/wardline/dataplane/event"
)

// Progress is what ReadFile and ReadFiles report while they read, for a
// progress bar: bytes read of the total (ETA), packets (packets/s), and
// the capture's own clock.
type Progress struct {
	BytesRead  uint64    // bytes read from the files so far
	TotalBytes uint64    // size of all files; 0 if a size is unknown
	Packets    uint64    // packets given to the tracker so far
	PacketTime time.Time // the tracker's clock: the latest packet time
	File       string    // the file the latest packet came from
}

// ProgressInterval is the least time between two progress calls (the last
// call, at the end, comes regardless).
const ProgressInterval = 100 * time.Millisecond

// checkEvery is how many packets pass between looks at the wall clock and
// the context.
const checkEvery = 1024

// ReadFile reads one capture file into a new Tracker with opts, delivers
// its events to h, flushes the remaining flows at the end, and returns the
// counters. progress (may be nil) is called at most every
// ProgressInterval and once at the end. A damaged file yields a
// *ReadError after every event of the packets before the damage, and the
// Stats so far.
func ReadFile(ctx context.Context, path string, h event.Handler, opts Options, progress func(Progress)) (Stats, error) {
	return ReadFiles(ctx, []string{path}, h, opts, progress)
}

// ReadFiles is ReadFile for several files sharing one Tracker, so flows
// continue from one file into the next (see Tracker.ReadFiles for the
// order). Errors of single files do not stop the others; they are joined
// in the returned error and recorded in Stats.Files.
func ReadFiles(ctx context.Context, paths []string, h event.Handler, opts Options, progress func(Progress)) (Stats, error) {
	t, err := NewTracker(opts, h)
	if err != nil {
		return Stats{}, err
	}
	files, err := t.ReadFiles(ctx, paths, progress)
	t.Flush()
	st := t.Stats()
	st.Files = files
	return st, err
}

// source is one file being merged.
type source struct {
	fs    *FileStats
	r     *Reader
	pk    *Packet
	first int64 // time key of the file's first packet
	ns    int64 // time key of pk
	order int   // position in the arguments: breaks ties
}

// timeKey orders packets for the merge; packets without a usable
// timestamp go first (the tracker gives them its current time).
func timeKey(ts time.Time) int64 {
	if sec := ts.Unix(); ts.IsZero() || sec < 0 || sec > maxUnixSec {
		return math.MinInt64
	}
	return ts.UnixNano()
}

// sourceHeap orders the open files by their next packet's time.
type sourceHeap []*source

func (h sourceHeap) Len() int { return len(h) }
func (h sourceHeap) Less(i, j int) bool {
	if h[i].ns != h[j].ns {
		return h[i].ns < h[j].ns
	}
	return h[i].order < h[j].order
}
func (h sourceHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *sourceHeap) Push(x any)   { *h = append(*h, x.(*source)) }
func (h *sourceHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	*h = old[:len(old)-1]
	return s
}

// ReadFiles feeds the packets of the capture files at paths to t, merged
// in time order as mergecap does: files are taken in the order of their
// first packet, and files that overlap in time are interleaved packet by
// packet (within one file, packets keep the file's order). A file is
// opened only when the merge reaches its first packet, so a long list of
// consecutive captures holds one or two open at a time.
//
// It does not Flush, so more input may follow. The returned FileStats
// (one per path, in the order given) say what each file delivered and why
// it stopped; the error joins the files' errors and the context's.
func (t *Tracker) ReadFiles(ctx context.Context, paths []string, progress func(Progress)) ([]FileStats, error) {
	var report func(Progress)
	if progress != nil {
		report = func(p Progress) {
			p.PacketTime = t.Now()
			progress(p)
		}
	}
	return merge(ctx, paths, t.Packet, report)
}

// merge calls fn for every packet of the files at paths, in time order
// (see Tracker.ReadFiles), and progress (if not nil) at most every
// ProgressInterval and once at the end.
func merge(ctx context.Context, paths []string, fn func(*Packet), progress func(Progress)) ([]FileStats, error) {
	files := make([]FileStats, len(paths))
	var errs []error
	fail := func(fs *FileStats, err error) {
		fs.Err = err
		errs = append(errs, err)
	}

	// Peek at each file's first packet to order them, then close it
	// again: opening every file at once could run out of descriptors.
	var pending []*source
	total, known := uint64(0), true
	for i, path := range paths {
		fs := &files[i]
		fs.Path = path
		r, err := Open(path)
		if err != nil {
			fail(fs, err)
			continue
		}
		fs.Format, fs.Size = r.Format(), r.Size()
		if fs.Size >= 0 {
			total += uint64(fs.Size)
		} else {
			known = false
		}
		pk, err := r.Next()
		r.Close()
		switch {
		case err == io.EOF: // no packets
		case err != nil:
			fail(fs, err)
		default:
			pending = append(pending, &source{fs: fs, first: timeKey(pk.Time), order: i})
		}
	}
	// Stable order: by first packet, then as given.
	for i := 1; i < len(pending); i++ {
		for j := i; j > 0 && (pending[j].first < pending[j-1].first ||
			pending[j].first == pending[j-1].first && pending[j].order < pending[j-1].order); j-- {
			pending[j], pending[j-1] = pending[j-1], pending[j]
		}
	}

	if !known {
		total = 0
	}
	var active sourceHeap
	var doneBytes uint64
	var packets uint64
	lastFile := ""
	lastReport := time.Now()
	report := func() {
		if progress == nil {
			return
		}
		read := doneBytes
		for _, s := range active {
			read += uint64(s.r.BytesRead())
		}
		progress(Progress{BytesRead: read, TotalBytes: total, Packets: packets, File: lastFile})
	}
	finish := func(s *source, err error) {
		if err != nil && err != io.EOF {
			fail(s.fs, err)
		}
		doneBytes += uint64(s.r.BytesRead())
		s.r.Close()
	}
	defer func() {
		for _, s := range active {
			s.r.Close()
		}
	}()

	var ctxErr error
	for ctxErr == nil {
		for len(pending) > 0 && (len(active) == 0 || pending[0].first <= active[0].ns) {
			s := pending[0]
			pending = pending[1:]
			r, err := Open(s.fs.Path)
			if err != nil {
				fail(s.fs, err)
				continue
			}
			s.r = r
			if s.pk, err = r.Next(); err != nil {
				finish(s, err)
				continue
			}
			s.ns = timeKey(s.pk.Time)
			heap.Push(&active, s)
		}
		if len(active) == 0 {
			break
		}
		s := active[0]
		fn(s.pk)
		s.fs.Packets++
		s.fs.Bytes += uint64(s.pk.Length)
		packets++
		if packets%checkEvery == 0 {
			lastFile = s.fs.Path
			if ctxErr = ctx.Err(); ctxErr != nil {
				ctxErr = fmt.Errorf("reading %s: %w", s.fs.Path, ctxErr)
			}
			if now := time.Now(); now.Sub(lastReport) >= ProgressInterval {
				lastReport = now
				report()
			}
		}
		pk, err := s.r.Next()
		if err != nil {
			heap.Pop(&active)
			finish(s, err)
			continue
		}
		s.pk, s.ns = pk, timeKey(pk.Time)
		if len(active) > 1 {
			heap.Fix(&active, 0)
		}
	}
	report()
	if ctxErr != nil {
		errs = append(errs, ctxErr)
	}
	return files, errors.Join(errs...)
}
