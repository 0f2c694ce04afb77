#!/bin/bash
# build-kernel.sh BOARD builds Wardline's kernel for BOARD and writes it as a
# gokrazy kernel package (a Go module directory) into boards/BOARD/kernel/
# (issue 5; recipe in ../shared/docs/platform.md, "Own kernel for the images").
#
#   base config  = the stock gokrazy kernel's own config (extract-ikconfig;
#                  kernel.amd64 for pc-amd64, kernel.rpi for rpi4), with
#                  every module (=m) turned off: the package ships none
#   + boards/BOARD/kernel.config       (what the appliance needs, annotated)
#   + boards/BOARD/kernel.trim.config  (what it does not need)
#   -> make olddefconfig -> every "=y" of both files must be =y, every
#      "is not set" must be unset -> make bzImage (pc-amd64) or Image and
#      the Pi 4 device trees (rpi4, cross-compiled with
#      gcc-aarch64-linux-gnu) -> package.
#
# Environment: KBUILD (work dir, default /var/tmp/wardline-kbuild: source tree and build
# output live there, never in the repository), KERNEL_DEBS (Debian packages),
# JOBS (default nproc). Idempotent: a rerun reuses the tree and the build.
set -euo pipefail

BOARD=${1:?usage: build-kernel.sh BOARD}
REPO=$(cd "$(dirname "$0")/.." && pwd)
KBUILD=${KBUILD:-/var/tmp/wardline-kbuild}
KERNEL_DEBS=${KERNEL_DEBS:-linux-source-6.1 build-essential bc flex bison libelf-dev libssl-dev dwarves cpio kmod zstd}
JOBS=${JOBS:-$(nproc)}
SRCPKG=linux-source-6.1

case "$BOARD" in
pc-amd64)
	ARCH=x86_64
	TARGET=bzImage
	# gokrazy's BIOS MBR loader cannot load a larger kernel.
	MAX_VMLINUZ=15000000
	IMAGE=arch/x86/boot/bzImage
	# The stock kernel whose config is the base, pinned so that a rebuild is
	# reproducible; bump it deliberately.
	DTBS=()
	BASE_MOD=github.com/gokrazy/kernel.amd64@v0.0.0-20260705070735-de680abf072b
	;;
rpi4)
	# Cross-built on the (amd64) build host. The base config is the stock
	# Raspberry Pi kernel's (gokrazy/kernel.rpi, built from the Pi fork);
	# the source stays Debian's mainline 6.1, so the device trees are the
	# mainline ones built here, not the fork's.
	ARCH=arm64
	export CROSS_COMPILE=aarch64-linux-gnu-
	KERNEL_DEBS="$KERNEL_DEBS gcc-aarch64-linux-gnu"
	TARGET="Image broadcom/bcm2711-rpi-4-b.dtb broadcom/bcm2711-rpi-400.dtb broadcom/bcm2711-rpi-cm4-io.dtb"
	IMAGE=arch/arm64/boot/Image
	DTBS=(broadcom/bcm2711-rpi-4-b.dtb broadcom/bcm2711-rpi-400.dtb broadcom/bcm2711-rpi-cm4-io.dtb)
	# The Pi firmware loads the uncompressed Image; no BIOS-loader limit,
	# but keep the FAT boot partition (100 MB, two kernels) comfortable.
	MAX_VMLINUZ=60000000
	BASE_MOD=github.com/gokrazy/kernel.rpi@v0.0.0-20251127164438-9778ec0261de
	;;
*)
	echo "build-kernel.sh: unknown board $BOARD (boards: pc-amd64, rpi4)" >&2
	exit 2
	;;
esac

BOARDDIR=$REPO/boards/$BOARD
ADDENDA=("$BOARDDIR/kernel.config")
[ -f "$BOARDDIR/kernel.trim.config" ] && ADDENDA+=("$BOARDDIR/kernel.trim.config")
OUT=$KBUILD/build-$BOARD
PKG=$BOARDDIR/kernel
log() { echo "build-kernel: $(date -u +%H:%M:%S) $*"; }

# 1. Debian packages (only the missing ones, so a rerun does not need apt).
missing=()
for p in $KERNEL_DEBS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "apt-get install ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# 2. The source tree (unpacked once; ~1.3 GB).
SRC=$KBUILD/$SRCPKG
mkdir -p "$KBUILD" "$OUT"
if [ ! -f "$SRC/Makefile" ]; then
	log "unpack /usr/src/$SRCPKG.tar.xz into $KBUILD"
	tar -C "$KBUILD" -xJf "/usr/src/$SRCPKG.tar.xz"
fi
srcver=$(dpkg-query -W -f='${Version}' "$SRCPKG")

# 3. The base config from the stock gokrazy kernel in the module cache.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
basedir=$(cd "$scratch" && go mod init scratch >/dev/null 2>&1 && go mod download -json "$BASE_MOD" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -f "$basedir/vmlinuz" ] || { echo "build-kernel: no vmlinuz in $BASE_MOD ($basedir)" >&2; exit 1; }
# Modules the base builds (=m; the stock rpi kernel ships lib/modules) are
# turned off: the package ships none. What the appliance needs is =y in the
# addenda.
"$SRC/scripts/extract-ikconfig" "$basedir/vmlinuz" |
	sed -E 's/^(CONFIG_[A-Za-z0-9_]+)=m$/# \1 is not set/' > "$OUT/base.config"

# 4. base + addenda -> olddefconfig. Rewrite .config only when its inputs
# changed, so a rebuild without changes is a no-op make.
cat "$OUT/base.config" "${ADDENDA[@]}" > "$OUT/wanted.config"
if ! cmp -s "$OUT/wanted.config" "$OUT/wanted.config.used" || [ ! -f "$OUT/.config" ]; then
	cp "$OUT/wanted.config" "$OUT/.config"
	make -s -C "$SRC" O="$OUT" ARCH="$ARCH" olddefconfig
	# Options new in this source that default to =m are turned off too (the
	# package ships no modules); repeat until nothing is =m.
	for _ in 1 2 3; do
		grep -qE '^CONFIG_[A-Za-z0-9_]+=m$' "$OUT/.config" || break
		sed -i -E 's/^(CONFIG_[A-Za-z0-9_]+)=m$/# \1 is not set/' "$OUT/.config"
		make -s -C "$SRC" O="$OUT" ARCH="$ARCH" olddefconfig
	done
	cp "$OUT/wanted.config" "$OUT/wanted.config.used"
fi

# 5. Verify: every option the addenda set must have survived olddefconfig
# (a missing dependency silently drops an option).
bad=()
while read -r opt; do
	grep -qx "CONFIG_$opt=y" "$OUT/.config" || bad+=("CONFIG_$opt=y wanted, got: $(grep -E "^(# )?CONFIG_$opt[= ]" "$OUT/.config" || echo absent)")
done < <(sed -n 's/^CONFIG_\([A-Za-z0-9_]*\)=y$/\1/p' "${ADDENDA[@]}")
while read -r opt; do
	grep -qE "^CONFIG_$opt=[ym]$" "$OUT/.config" && bad+=("CONFIG_$opt wanted unset, got: $(grep -E "^CONFIG_$opt=" "$OUT/.config")")
done < <(sed -n 's/^# CONFIG_\([A-Za-z0-9_]*\) is not set$/\1/p' "${ADDENDA[@]}")
# No modules: the package ships only vmlinuz, so an =m option would be absent.
while read -r m; do bad+=("$m: modules are not shipped, make it y or unset it"); done < <(grep -E '^CONFIG_[A-Za-z0-9_]+=m$' "$OUT/.config")
if [ ${#bad[@]} -gt 0 ]; then
	echo "build-kernel: olddefconfig did not keep these options (a dependency is missing?):" >&2
	printf '  %s\n' "${bad[@]}" >&2
	exit 1
fi
log "config verified: every option of ${ADDENDA[*]#$REPO/} holds"

# 6. Build.
log "make -j$JOBS $TARGET (a clean build takes ~30 min on 2 cores)"
kind=clean
[ -f "$OUT/vmlinux" ] && kind=incremental
start=$(date +%s)
# shellcheck disable=SC2086 # TARGET is a list
make -s -C "$SRC" O="$OUT" ARCH="$ARCH" -j"$JOBS" $TARGET
secs=$(( $(date +%s) - start ))
release=$(make -s -C "$SRC" O="$OUT" ARCH="$ARCH" kernelrelease)
size=$(stat -c %s "$OUT/$IMAGE")
log "built $release in ${secs}s ($kind build): $IMAGE $size bytes"
if [ "$size" -ge "$MAX_VMLINUZ" ]; then
	echo "build-kernel: vmlinuz is $size bytes, the limit for $BOARD is $MAX_VMLINUZ: trim more" >&2
	exit 1
fi

# 7. The gokrazy kernel package: a nested Go module, so the main module's
# `go test ./...` does not descend into it.
rm -rf "$PKG"
mkdir -p "$PKG/lib/modules/$release"
cp "$OUT/$IMAGE" "$PKG/vmlinuz"
cp "$OUT/.config" "$PKG/config"
cp "$basedir/cmdline.txt" "$PKG/cmdline.txt"
chmod 0644 "$PKG/cmdline.txt" # read-only in the module cache
for dtb in "${DTBS[@]}"; do
	cp "$OUT/arch/$ARCH/boot/dts/$dtb" "$PKG/$(basename "$dtb")"
done
if [ -s "$basedir/config.txt" ]; then
	# The Pi firmware's config.txt (arm_control, kernel=vmlinuz, enable_uart
	# which gok flips for a serial console).
	cp "$basedir/config.txt" "$PKG/config.txt"
	chmod 0644 "$PKG/config.txt"
else
	: > "$PKG/config.txt"
fi
cp "$OUT/modules.builtin" "$OUT/modules.builtin.modinfo" "$PKG/lib/modules/$release/"
cat > "$PKG/go.mod" <<GOMOD
module github.com/wardline/wardline/boards/$BOARD/kernel

go 1.22
GOMOD
cat > "$PKG/kernel.go" <<GO
// Package kernel is Wardline's $BOARD kernel as a gokrazy kernel package:
// vmlinuz, its config, cmdline.txt and modules.builtin. Built by
// boards/build-kernel.sh (make kernel BOARD=$BOARD); do not edit by hand.
package kernel
GO
cat > "$PKG/build.txt" <<INFO
board:     $BOARD
release:   $release
source:    Debian $SRCPKG $srcver
base:      $BASE_MOD (config via extract-ikconfig)
addenda:   ${ADDENDA[*]#$REPO/}
build:     make -j$JOBS $TARGET, ${secs}s ($kind build) on $(nproc) cores, $(date -u +%Y-%m-%d)
vmlinuz:   $size bytes
dtbs:      ${DTBS[*]:-none}
INFO
log "package written to ${PKG#$REPO/}"
cat "$PKG/build.txt"
