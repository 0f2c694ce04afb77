package update

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// box is an HTTP stand-in for wardlined's health and status answers, so
// that the gate's decisions can be tested without a VM; the QEMU test in
// images/ runs the whole update against a booted box.
type box struct {
	mu       sync.Mutex
	release  string
	healthy  bool
	down     bool
	tx       [2]uint64
	step     uint64 // added to both ports' tx per status request
	stepOnly int    // if 1 or 2: only that port advances
}

func (b *box) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down {
		http.Error(w, "down", http.StatusBadGateway)
		return
	}
	switch r.URL.Path {
	case "/health.json":
		code := http.StatusOK
		if !b.healthy {
			code = http.StatusServiceUnavailable
		}
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]any{"healthy": b.healthy, "release": b.release, "first_error": "bridge: missing"})
	case "/api/v1/status":
		for i := range b.tx {
			if b.stepOnly == 0 || b.stepOnly == i+1 {
				b.tx[i] += b.step
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"release": b.release, "ports": []map[string]any{
			{"interface": "eth1", "role": "inside", "tx_packets": b.tx[0]},
			{"interface": "eth2", "role": "outside", "tx_packets": b.tx[1]},
		}})
	default:
		http.NotFound(w, r)
	}
}

func gateOptions(url string) *Options {
	o := &Options{API: url, Timeout: 2 * time.Second, Window: 20 * time.Millisecond, MinForwarded: 5}
	o.defaults()
	return o
}

func TestGate(t *testing.T) {
	tests := []struct {
		name    string
		b       *box
		want    string // substring of the reason; "" = healthy
		wantNow bool   // a definite failure, not a timeout
	}{
		{"healthy and forwarding", &box{release: "new", healthy: true, step: 10}, "", false},
		{"alive but not forwarding", &box{release: "new", healthy: true, step: 0}, "no forwarding progress: eth1 (inside) sent 0 packets", false},
		{"one direction only", &box{release: "new", healthy: true, step: 10, stepOnly: 1}, "eth2 (outside) sent 0 packets", false},
		{"too little", &box{release: "new", healthy: true, step: 3}, "sent 3 packets", false},
		{"unhealthy", &box{release: "new", healthy: false, step: 10}, "unhealthy: bridge: missing", false},
		{"other release", &box{release: "other", healthy: true, step: 10}, `release "other" answers, want "new"`, false},
		{"old release is back", &box{release: "old", healthy: true, step: 10}, "came back on release old", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.b)
			defer srv.Close()
			o := gateOptions(srv.URL)
			why, done := o.check(context.Background(), "new", "old")
			if tc.want == "" {
				if why != "" || !done {
					t.Fatalf("check = %q, %v; want healthy", why, done)
				}
				return
			}
			if !strings.Contains(why, tc.want) || done != tc.wantNow {
				t.Fatalf("check = %q, done %v; want %q, done %v", why, done, tc.want, tc.wantNow)
			}
		})
	}
}

// TestWaitHealthy: the gate waits for the old process to go away, then for
// the new release to become healthy and forward; a box that never does
// fails with the last reason when the timeout ends.
func TestWaitHealthy(t *testing.T) {
	b := &box{release: "old", healthy: true, step: 10}
	srv := httptest.NewServer(b)
	defer srv.Close()
	o := gateOptions(srv.URL)
	o.Timeout = 10 * time.Second
	go func() {
		time.Sleep(300 * time.Millisecond)
		b.mu.Lock()
		b.down = true
		b.mu.Unlock()
		time.Sleep(500 * time.Millisecond)
		b.mu.Lock()
		b.down, b.release, b.healthy = false, "new", false
		b.mu.Unlock()
		time.Sleep(1500 * time.Millisecond)
		b.mu.Lock()
		b.healthy = true
		b.mu.Unlock()
	}()
	start := time.Now()
	if why := o.waitHealthy(context.Background(), "new", "old"); why != "" {
		t.Fatalf("waitHealthy: %s", why)
	}
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("healthy after %v, before the box was (≥ 2.3 s)", d)
	}

	// Never forwards: times out naming the last reason.
	b2 := &box{release: "new", healthy: true, step: 0, down: true}
	srv2 := httptest.NewServer(b2)
	defer srv2.Close()
	o2 := gateOptions(srv2.URL)
	o2.Timeout = 1500 * time.Millisecond
	go func() {
		time.Sleep(100 * time.Millisecond)
		b2.mu.Lock()
		b2.down = false
		b2.mu.Unlock()
	}()
	why := o2.waitHealthy(context.Background(), "new", "old")
	if !strings.Contains(why, "within 1.5s") || !strings.Contains(why, "no forwarding progress") {
		t.Fatalf("waitHealthy = %q; want a timeout naming the missing forwarding", why)
	}
}

func TestRedact(t *testing.T) {
	if got := redact("http://gokrazy:secret@[fe80::1%25eth0]/"); strings.Contains(got, "secret") || !strings.Contains(got, "fe80::1") {
		t.Errorf("redact = %q", got)
	}
	if got := redact("http://host/"); got != "http://host/" {
		t.Errorf("redact = %q", got)
	}
}

// writeImage writes a small disk image: a protective MBR with a GPT (or a
// plain MBR), a boot partition, a squashfs root of rootUsed bytes.
func writeImage(t *testing.T, gpt bool, rootUsed uint64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "wl.img")
	if err := os.WriteFile(path, imageBytes(gpt, rootUsed), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".release", []byte("r1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func imageBytes(gpt bool, rootUsed uint64) []byte {
	const bootLBA, bootN, rootLBA, rootN = 64, 64, 128, 256
	img := make([]byte, (rootLBA+rootN+34)*sector)
	img[510], img[511] = 0x55, 0xaa
	copy(img[0:446], bytes.Repeat([]byte{0xfa}, 446)) // boot code
	put := func(i int, typ byte, lba, n uint32) {
		e := img[446+16*i:]
		e[4] = typ
		binary.LittleEndian.PutUint32(e[8:], lba)
		binary.LittleEndian.PutUint32(e[12:], n)
	}
	if gpt {
		// Hybrid, as gok writes it: the boot partition, then the 0xEE entry.
		put(0, 0x0c, bootLBA, bootN)
		put(1, 0xee, 1, bootLBA-1)
		h := img[sector:]
		copy(h, "EFI PART")
		binary.LittleEndian.PutUint64(h[72:], 2)
		binary.LittleEndian.PutUint32(h[80:], 4)
		binary.LittleEndian.PutUint32(h[84:], 128)
		entry := func(i int, first, last uint64) {
			e := img[2*sector+128*i:]
			copy(e[0:16], bytes.Repeat([]byte{byte(i + 1)}, 16)) // type GUID
			binary.LittleEndian.PutUint64(e[32:], first)
			binary.LittleEndian.PutUint64(e[40:], last)
		}
		entry(0, bootLBA, bootLBA+bootN-1)
		entry(1, rootLBA, rootLBA+rootN-1)
		binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(img[2*sector:2*sector+4*128]))
	} else {
		put(0, 0x0c, bootLBA, bootN)
		put(1, 0x83, rootLBA, rootN)
	}
	copy(img[bootLBA*sector:], "\xeb\x3c\x90gokrazy")
	sb := img[rootLBA*sector:]
	copy(sb, "hsqs")
	binary.LittleEndian.PutUint64(sb[40:], rootUsed)
	return img
}

func TestOpenImage(t *testing.T) {
	for _, gpt := range []bool{true, false} {
		im, err := OpenImage(writeImage(t, gpt, 5000))
		if err != nil {
			t.Fatalf("gpt %v: %v", gpt, err)
		}
		if im.Release != "r1" || im.Boot.Size() != 64*sector || im.Root.Size() != 8192 || im.MBR.Size() != 446 {
			t.Errorf("gpt %v: release %q boot %d root %d mbr %d; want r1, %d, 8192 (5000 rounded to 4 KiB), 446",
				gpt, im.Release, im.Boot.Size(), im.Root.Size(), im.MBR.Size(), 64*sector)
		}
		var magic [4]byte
		im.Root.ReadAt(magic[:], 0)
		if string(magic[:]) != "hsqs" {
			t.Errorf("gpt %v: root starts with %q", gpt, magic)
		}
		im.Close()
	}
}

func TestOpenImageErrors(t *testing.T) {
	tests := []struct {
		name   string
		mangle func(path string)
		want   string
	}{
		{"no release file", func(p string) { os.Remove(p + ".release") }, "release name"},
		{"no signature", func(p string) { patch(t, p, 510, []byte{0, 0}) }, "MBR signature"},
		{"not squashfs", func(p string) { patch(t, p, 128*sector, []byte("XXXX")) }, "no squashfs superblock"},
		{"root too big", func(p string) {
			var b [8]byte
			binary.LittleEndian.PutUint64(b[:], 1<<40)
			patch(t, p, 128*sector+40, b[:])
		}, "outside the partition"},
		{"partition beyond the image", func(p string) {
			var b [8]byte
			binary.LittleEndian.PutUint64(b[:], 1<<30)
			patch(t, p, 2*sector+128+40, b[:])
		}, "GPT partition 2: bytes"},
		{"no GPT header", func(p string) { patch(t, p, sector, []byte("NOT PART")) }, "no GPT header"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := writeImage(t, true, 5000)
			tc.mangle(p)
			_, err := OpenImage(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("OpenImage: %v; want an error naming %s and %q", err, p, tc.want)
			}
		})
	}
}

func patch(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// FuzzReadPartitions: any bytes give partitions inside the image or an
// error, never a panic.
func FuzzReadPartitions(f *testing.F) {
	f.Add(imageBytes(true, 5000)[:4*sector])
	f.Add(imageBytes(false, 5000)[:4*sector])
	f.Add(make([]byte, 4*sector))
	f.Fuzz(func(t *testing.T, b []byte) {
		parts, err := readPartitions(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		for i, p := range parts {
			if p.off < 0 || p.size < 0 || p.off+p.size > int64(len(b)) {
				t.Fatalf("partition %d %+v outside %d bytes", i+1, p, len(b))
			}
		}
	})
}

func TestInsertTestboot(t *testing.T) {
	line := "console=ttyS0,115200 root=PARTUUID=x/PARTNROFF=1 ro init=/gokrazy/init panic=10"
	pad := strings.Repeat(" ", 64)
	b := []byte("\x00\x00" + line + pad + "\x00\x00title gokrazy\noptions " + line + pad + "\x00")
	n, err := insertTestboot(b)
	if err != nil || n != 2 {
		t.Fatalf("insertTestboot = %d, %v; want 2 command lines changed", n, err)
	}
	want := line + testbootFlag + strings.Repeat(" ", 64-len(testbootFlag))
	if got := strings.Count(string(b), want); got != 2 {
		t.Fatalf("%d command lines read %q; want 2:\n%q", got, want, b)
	}
	if _, err := insertTestboot(b); err == nil || !strings.Contains(err.Error(), "already has") {
		t.Errorf("second insert: %v, want an error", err)
	}
	short := []byte(line + "   \x00")
	if _, err := insertTestboot(short); err == nil || !strings.Contains(err.Error(), "no padding") {
		t.Errorf("no padding: %v, want an error", err)
	}
	if n, err := insertTestboot([]byte("no command line here")); n != 0 || err != nil {
		t.Errorf("no command line: %d, %v", n, err)
	}
}

func TestGuard(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "cmdline")
		os.WriteFile(p, []byte(s), 0o644)
		return p
	}
	var reboots int
	o := GuardOptions{Deadline: 100 * time.Millisecond, Reboot: func() error { reboots++; return nil }}

	// A normal boot: nothing to guard, at once.
	o.Cmdline = write("root=PARTUUID=x/PARTNROFF=1 init=/gokrazy/init gokrazy.switch_on_boot=1\n")
	start := time.Now()
	if err := Guard(context.Background(), o); err != nil || reboots != 0 || time.Since(start) > 50*time.Millisecond {
		t.Fatalf("normal boot: %v, %d reboots after %v; want nil, none, at once", err, reboots, time.Since(start))
	}

	// A test boot not confirmed: reboot after the deadline.
	o.Cmdline = write("root=PARTUUID=x/PARTNROFF=1 init=/gokrazy/init gokrazy.try_boot_inactive=1\n")
	start = time.Now()
	if err := Guard(context.Background(), o); err != nil || reboots != 1 || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("test boot: %v, %d reboots after %v; want one after the 100ms deadline", err, reboots, time.Since(start))
	}

	// Stopped before the deadline (the updater's confirming reboot stops
	// every service): no reboot of its own.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	o.Deadline = time.Hour
	if err := Guard(ctx, o); err == nil || reboots != 1 {
		t.Fatalf("stopped: %v, %d reboots; want ctx's error and no new reboot", err, reboots)
	}

	o.Cmdline = filepath.Join(dir, "missing")
	if err := Guard(context.Background(), o); err == nil || !strings.Contains(err.Error(), "command line") {
		t.Fatalf("missing cmdline: %v", err)
	}
}
