package kernelcheck

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The boards' kernels (issue 5): boards/<board>/kernel.config is the
// annotated addendum, boards/pc-amd64/kernel/ the committed build of it
// (boards/build-kernel.sh, `make kernel BOARD=pc-amd64`).
const boardsDir = "../../boards"

// maxVmlinuz is what gokrazy's BIOS MBR loader can still load.
const maxVmlinuz = 15_000_000

// addendumOptions returns the options an addendum sets, name → value
// ("y", a string, or "n" for "# CONFIG_X is not set").
func addendumOptions(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	notSet := regexp.MustCompile(`^# CONFIG_([A-Za-z0-9_]+) is not set$`)
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if m := notSet.FindStringSubmatch(line); m != nil {
			out[m[1]] = "n"
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "CONFIG_") {
			out[strings.TrimPrefix(k, "CONFIG_")] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Every option wardlined checks at start is documented (and set to y) in
// each board's addendum, so the check and the kernels cannot drift apart.
func TestBoardAddendaCoverOptions(t *testing.T) {
	for _, board := range []string{"pc-amd64", "rpi4"} {
		t.Run(board, func(t *testing.T) {
			set := addendumOptions(t, filepath.Join(boardsDir, board, "kernel.config"))
			for _, o := range Options(Need{NFT: true, Inspect: true}) {
				if got := set[o.Name]; got != "y" {
					t.Errorf("boards/%s/kernel.config: CONFIG_%s=%q, want y (%s %s)", board, o.Name, got, o.For, o.Why)
				}
			}
		})
	}
}

// rpi4 shares the appliance part of pc-amd64's addendum.
func TestBoardAddendaAgree(t *testing.T) {
	pc := addendumOptions(t, filepath.Join(boardsDir, "pc-amd64", "kernel.config"))
	pi := addendumOptions(t, filepath.Join(boardsDir, "rpi4", "kernel.config"))
	for name, want := range pc {
		if got := pi[name]; got != want {
			t.Errorf("CONFIG_%s: pc-amd64 has %q, rpi4 %q", name, want, got)
		}
	}
}

// The committed pc-amd64 kernel has every option wardlined needs with nft
// and inspection, BTF and the JIT, and fits the boot loader.
// TestBoardKernels checks each committed kernel package against what
// wardlined needs, its addenda, and the package layout gok expects.
func TestBoardKernels(t *testing.T) {
	for _, b := range []struct {
		board   string
		max     int64    // vmlinuz size limit
		extra   []string // files the package must hold besides vmlinuz
		imageOf string   // what `file` would call vmlinuz; checked by magic
	}{
		// gokrazy's BIOS MBR loader cannot load a larger kernel.
		{"pc-amd64", maxVmlinuz, nil, "bzImage"},
		// The Pi firmware loads the arm64 Image and the mainline device trees.
		{"rpi4", 60000000, []string{"bcm2711-rpi-4-b.dtb", "bcm2711-rpi-400.dtb", "bcm2711-rpi-cm4-io.dtb"}, "arm64"},
	} {
		t.Run(b.board, func(t *testing.T) { checkBoardKernel(t, b.board, b.max, b.extra, b.imageOf) })
	}
}

func checkBoardKernel(t *testing.T, board string, max int64, extra []string, imageOf string) {
	pkg := filepath.Join(boardsDir, board, "kernel")
	f, err := os.Open(filepath.Join(pkg, "config"))
	if errors.Is(err, os.ErrNotExist) {
		_, verr := os.Stat(filepath.Join(pkg, "vmlinuz"))
		if verr == nil && os.Getenv("CI") == "1" {
			t.Fatalf("%s/vmlinuz is committed without its config: rerun `make kernel BOARD=%s` and commit both", pkg, board)
		}
		t.Skipf("%s/config not there: the kernel artifact is not built yet (make kernel BOARD=%s)", pkg, board)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := ParseConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	missing, _ := CheckConfig(cfg, Need{NFT: true, Inspect: true})
	for _, o := range missing {
		t.Errorf("CONFIG_%s is not set: %s", o.Name, o.Why)
	}
	// Not required at start, but the reason this kernel exists.
	for _, name := range []string{"DEBUG_INFO_BTF", "BPF_JIT", "XDP_SOCKETS", "NFT_QUEUE", "NF_TABLES_BRIDGE"} {
		if got := cfg[name]; got != "y" {
			t.Errorf("CONFIG_%s=%q, want y", name, got)
		}
	}
	// Everything the addenda set held through olddefconfig.
	for _, addendum := range []string{"kernel.config", "kernel.trim.config"} {
		for name, want := range addendumOptions(t, filepath.Join(boardsDir, board, addendum)) {
			got := cfg[name]
			if want == "n" && got == "" {
				continue
			}
			if got != want {
				t.Errorf("CONFIG_%s=%q in the built config, %s wants %q", name, got, addendum, want)
			}
		}
	}
	for name, v := range cfg {
		if v == "m" {
			t.Errorf("CONFIG_%s=m: the package ships no modules", name)
		}
	}

	vmlinuz, err := os.ReadFile(filepath.Join(pkg, "vmlinuz"))
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(vmlinuz)) >= max {
		t.Errorf("vmlinuz is %d bytes, the limit for %s is %d", len(vmlinuz), board, max)
	}
	switch imageOf {
	case "bzImage": // "HdrS" at 0x202
		if len(vmlinuz) < 0x206 || string(vmlinuz[0x202:0x206]) != "HdrS" {
			t.Errorf("vmlinuz is not an x86 bzImage")
		}
	case "arm64": // "ARM\x64" at 56
		if len(vmlinuz) < 60 || string(vmlinuz[56:60]) != "ARM\x64" {
			t.Errorf("vmlinuz is not an arm64 Image")
		}
	}
	for _, name := range append([]string{"cmdline.txt", "config.txt", "kernel.go"}, extra...) {
		if _, err := os.Stat(filepath.Join(pkg, name)); err != nil {
			t.Error(err)
		}
	}
	mods, _ := filepath.Glob(filepath.Join(pkg, "lib", "modules", "*", "modules.builtin"))
	if len(mods) != 1 {
		t.Errorf("want one lib/modules/<release>/modules.builtin, got %v", mods)
	}
	gomod, err := os.ReadFile(filepath.Join(pkg, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "module github.com/wardline/wardline/boards/" + board + "/kernel\n"; !strings.HasPrefix(string(gomod), want) {
		t.Errorf("go.mod starts %q, want %q (a nested module, outside the main module's ./...)", strings.SplitN(string(gomod), "\n", 2)[0], want)
	}
}
