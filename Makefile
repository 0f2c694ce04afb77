# Wardline — see README.md. Everything here runs as root on a Linux box with
# BPF, XDP and network namespaces (CI does); `make test` skips root-only tests
# with a message when not root.

GO      ?= go
BIN     := bin
PKGS    := ./...
# Go test flags: -p 2 fits the 2-core CI machines; integration tests build
# uniquely named namespaces, so packages may run in parallel.
TESTFLAGS ?= -count=1 -p 2 -timeout 25m

.PHONY: all deps generate vmlinux build test test-short lint bench demo eval fuzz clean kernel image boot-test bench-image update

# Debian packages `make image` and the QEMU boot test use.
IMAGE_DEBS := qemu-system-x86 jq e2fsprogs util-linux

# Debian packages the tests (the boot test included), the demo and the
# benchmarks use.
DEBS := make git ca-certificates clang llvm libbpf-dev bpftool \
	iproute2 iputils-ping ethtool nftables util-linux \
	dnsmasq-base dnsutils curl openssl tcpdump iperf3 netsniff-ng libndpi-bin \
	gcc libnetfilter-queue-dev iptables $(IMAGE_DEBS)

all: build

## deps: install the Debian packages (root; CI runs this)
deps:
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(DEBS)

## generate: compile bpf/ with bpf2go (needs clang, llvm, libbpf-dev); output is committed
generate:
	$(GO) generate ./dataplane/... ./appliance/bench/...

# Debian packages the kernel build uses (make kernel; not needed by CI, which
# uses the committed boards/pc-amd64/kernel).
KERNEL_DEBS := linux-source-6.1 build-essential bc flex bison libelf-dev libssl-dev \
	dwarves cpio kmod zstd

BOARD  ?= pc-amd64
KBUILD ?= /var/tmp/wardline-kbuild

## kernel: build BOARD's kernel package into boards/$(BOARD)/kernel (root; ~30 min on 2 cores; source and objects in KBUILD)
kernel:
	KBUILD=$(KBUILD) KERNEL_DEBS="$(KERNEL_DEBS)" boards/build-kernel.sh $(BOARD)

# gok (github.com/gokrazy/tools/cmd/gok) pinned; boards/image.sh installs it
# into $(IMAGEDIR)/cache when missing.
GOK_VERSION := v0.0.0-20260109180632-8ed49b4fafc7
IMAGEDIR    ?= /var/tmp/wardline-image

BOOTTESTFLAGS ?= -count=1 -v -timeout 20m

RUNS ?= 3

## bench-image: the QEMU end-to-end test RUNS times; boot, image, update and rollback figures (min/median/max) for docs/benchmarks.md
bench-image:
	$(GO) test -tags bootimage -run TestBootImage -count=$(RUNS) -v -timeout 60m ./images/ > $(IMAGEDIR)/bench-image.log 2>&1 || \
		{ tail -50 $(IMAGEDIR)/bench-image.log; exit 1; }
	images/figures.sh $(IMAGEDIR)/bench-image.log

## boot-test: the QEMU end-to-end test alone: boot the pc-amd64 image as the lab's box; bridge, detect, block, update, roll back, guard (root; ~10 min; make test runs it too)
boot-test:
	$(GO) test -tags bootimage $(BOOTTESTFLAGS) ./images/

IMG ?= $(IMAGEDIR)/wardline-$(BOARD).img

## image: full gokrazy disk image for BOARD (IMG) with /perm formatted and the default config in place (root; work files in IMAGEDIR; needs jq, e2fsprogs, util-linux)
image:
	GO=$(GO) GOK_VERSION=$(GOK_VERSION) IMAGEDIR=$(IMAGEDIR) IMG=$(IMG) boards/image.sh $(BOARD)

# The box `make update` talks to: gokrazy's address (host, [fe80::…%iface])
# and wardlined's management API. PREVIOUS (optional) is the image the box
# runs now; a rollback then restores its kernel too.
BOX     ?=
API     ?= http://198.18.254.1:9100
PREVIOUS ?=
UPDATEFLAGS ?=

## update: build BOARD's image and push it to the box at BOX: A/B root, test boot, kept only if healthy and forwarding, else rolled back (see appliance/update)
update: image
	@test -n "$(BOX)" || { echo "make update: set BOX=<gokrazy address of the box>" >&2; exit 2; }
	CGO_ENABLED=0 $(GO) build -o $(BIN)/ ./appliance/cmd/wardline
	$(BIN)/wardline update -image $(IMG) -box '$(BOX)' -api $(API) \
		-password-file $(IMAGEDIR)/gokrazy/$(BOARD)/http-password.txt \
		$(if $(PREVIOUS),-previous $(PREVIOUS)) $(UPDATEFLAGS)

## vmlinux: refresh bpf/include/vmlinux.h from the running kernel's BTF (committed)
vmlinux:
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > bpf/include/vmlinux.h

## build: the daemon and the CLI into bin/
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN)/ ./appliance/cmd/...

## lint: gofmt and go vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

## test: lint, then every test (root netns integration tests included when root), then the QEMU end-to-end test of the image
test: lint
	$(GO) test $(TESTFLAGS) $(PKGS)
	$(GO) test -tags bootimage $(BOOTTESTFLAGS) ./images/

## test-short: pure-Go and packet-table tests only
test-short:
	$(GO) test -short $(TESTFLAGS) $(PKGS)

## bench: fast-path benchmarks with ratios against their baselines (see docs/benchmarks.md)
bench: build
	$(BIN)/wardline bench $(BENCHFLAGS)

## eval: detection quality on the labelled corpus in ../shared/corpus (per scenario and detector)
CORPUS ?= ../shared/corpus
eval: build
	$(BIN)/wardline eval -corpus $(CORPUS)/generated

## demo: bring up the lab with the appliance inline and show live flows crossing it
demo: build
	$(BIN)/wardline lab demo $(DEMOFLAGS)

## fuzz: run every fuzz target for FUZZTIME each (make test runs their seeds only)
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run XXX -fuzz FuzzParse -fuzztime $(FUZZTIME) ./appliance/config/
	$(GO) test -run XXX -fuzz FuzzDecode -fuzztime $(FUZZTIME) ./dataplane/
	$(GO) test -run XXX -fuzz FuzzXDP -fuzztime $(FUZZTIME) ./dataplane/
	for f in FuzzParseDNS FuzzParseClientHello FuzzParseHTTPRequest FuzzStratum FuzzQUICInitial; do \
		$(GO) test -run XXX -fuzz $$f -fuzztime $(FUZZTIME) ./detect/proto/ || exit 1; done
	$(GO) test -run XXX -fuzz FuzzReadPartitions -fuzztime $(FUZZTIME) ./appliance/update/
	for p in ./detect/pcap/ ./detect/dnstunnel/ ./detect/dga/; do \
		for f in $$($(GO) test -list 'Fuzz.*' $$p | grep ^Fuzz); do \
			$(GO) test -run XXX -fuzz $$f -fuzztime $(FUZZTIME) $$p || exit 1; done; done

clean:
	rm -rf $(BIN)
