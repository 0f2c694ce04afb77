#!/bin/bash
# image.sh BOARD — build BOARD's full gokrazy disk image (make image BOARD=…).
#
# Installs the pinned gok into a cache directory if missing, creates/updates the
# gok instance from boards/BOARD/gokrazy-config.json (wardlined built from this
# checkout and the board's kernel package from boards/BOARD/kernel, both
# through replace directives in the instance's builddir), runs
# `gok overwrite --full`, then formats /perm (partition 4) with the default
# appliance config boards/BOARD/wardlined.json at /perm/wardline/wardlined.json
# and the management API token at /perm/wardline/api-token.
#
# Every image carries a release name, stamped into wardlined (reported by
# its status API and health.json) and written next to the image as
# IMG.release, so that `make update` can tell which build a box runs.
# The instance's secrets (gokrazy update password, API token) are generated
# once into the instance directory, never into the repository.
#
# Environment:
#   IMAGEDIR         work directory (gok cache, instance, image); default /var/tmp/wardline-image
#   GOK_VERSION      github.com/gokrazy/tools version (set by the Makefile)
#   IMAGE_BYTES      target storage size; default 2 GiB (a sparse file)
#   IMG              image path; default $IMAGEDIR/wardline-BOARD.img
#   RELEASE          release name; default git describe + build time
#   WARDLINED_CONFIG the config placed on /perm; default boards/BOARD/wardlined.json
#   WARDLINED_PKG    the Go package installed as /user/wardlined; default this
#                    checkout's appliance/cmd/wardlined (the update test swaps
#                    in a deliberately broken one)
#   GUARD_DEADLINE   wardline-guard's -deadline (default: the board config's)
set -euo pipefail

board=${1:?usage: image.sh BOARD}
repo=$(cd "$(dirname "$0")/.." && pwd)
boarddir=$repo/boards/$board
imagedir=${IMAGEDIR:-/var/tmp/wardline-image}
gok_version=${GOK_VERSION:-v0.0.0-20260109180632-8ed49b4fafc7}
image_bytes=${IMAGE_BYTES:-2147483648}
img=${IMG:-$imagedir/wardline-$board.img}
GO=${GO:-go}
module=github.com/wardline/wardline
daemon_pkg=$module/appliance/cmd/wardlined
wardlined_pkg=${WARDLINED_PKG:-$daemon_pkg}
wardlined_config=${WARDLINED_CONFIG:-$boarddir/wardlined.json}
if [ -z "${RELEASE:-}" ]; then
	RELEASE="$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)+$(date -u +%Y%m%dT%H%M%S)"
fi
case "$RELEASE" in
*[!A-Za-z0-9._+-]*) echo "image.sh: RELEASE $RELEASE: only letters, digits and ._+- allowed" >&2; exit 1 ;;
esac

for f in gokrazy-config.json wardlined.json kernel/go.mod; do
	[ -e "$boarddir/$f" ] || { echo "image.sh: $boarddir/$f missing" >&2; exit 1; }
done
for tool in jq mkfs.ext4 partx debugfs; do
	command -v "$tool" >/dev/null || { echo "image.sh: $tool not found (apt-get install jq e2fsprogs util-linux)" >&2; exit 1; }
done

start=$(date +%s)
mkdir -p "$imagedir"

# 1. The pinned gok. `go install …@version` is refused for this module, so it
#    is built from a scratch module that requires exactly that version.
gokdir=$imagedir/cache/gok-$gok_version
gok=$gokdir/gok
if [ ! -x "$gok" ]; then
	echo "== installing gok $gok_version into $gokdir"
	mkdir -p "$gokdir"
	(
		cd "$gokdir"
		[ -f go.mod ] || $GO mod init wardline/gok >/dev/null 2>&1
		$GO get "github.com/gokrazy/tools/cmd/gok@$gok_version"
		$GO build -o "$gok.tmp" github.com/gokrazy/tools/cmd/gok
		mv "$gok.tmp" "$gok"
	)
fi

# 2. The appliance config must validate before it goes into an image.
echo "== checking $wardlined_config"
(cd "$repo" && CGO_ENABLED=0 $GO build -o "$imagedir/wardlined.host" ./appliance/cmd/wardlined)
"$imagedir/wardlined.host" -config "$wardlined_config" -check

# 3. The gok instance: config.json from the board's template, plus an update
#    password kept in the instance directory (never in the repository).
parent=$imagedir/gokrazy
inst=$parent/$board
mkdir -p "$inst"
if [ ! -s "$inst/http-password.txt" ]; then
	head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$inst/http-password.txt"
fi
if [ ! -s "$inst/api-token" ]; then
	(umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$inst/api-token")
fi
# The daemon package: this checkout's wardlined, or a replacement installed
# under the same name (its PackageConfig moves with it, plus Basename).
jq --arg pw "$(cat "$inst/http-password.txt")" --arg daemon "$daemon_pkg" --arg pkg "$wardlined_pkg" \
	--arg ldflags "-ldflags=-X $module/appliance/daemon.Release=$RELEASE" '
	.Update.HTTPPassword = $pw
	| .Packages = [.Packages[] | if . == $daemon then $pkg else . end]
	| .PackageConfig[$pkg] = (.PackageConfig[$daemon] + {GoBuildFlags: [$ldflags]}
		+ (if $pkg == $daemon then {} else {Basename: "wardlined"} end))
	| if $pkg == $daemon then . else del(.PackageConfig[$daemon]) end
	| if $guard == "" then . else .PackageConfig[$guardpkg].CommandLineFlags = ["-deadline", $guard] end' \
	--arg guard "${GUARD_DEADLINE:-}" --arg guardpkg "$module/appliance/cmd/wardline-guard" \
	"$boarddir/gokrazy-config.json" >"$inst/config.json.tmp"
mv "$inst/config.json.tmp" "$inst/config.json"

# builddir/<pkg>/go.mod with a replace to this checkout; gok runs
# `go list`/`go build -mod=mod` there, which fills in the rest.
builddir_replace() { # PKG MODULE DIR
	local bd=$inst/builddir/$1
	mkdir -p "$bd"
	if [ ! -f "$bd/go.mod" ]; then
		(cd "$bd" && $GO mod init "gokrazy/build/$1" >/dev/null 2>&1)
	fi
	(cd "$bd" && $GO mod edit -require="$2@v0.0.0-00010101000000-000000000000" -replace="$2=$3")
}
# Every package of this module the image holds (wardlined or its
# replacement, wardline-guard) is built from this checkout.
for pkg in $(jq -r --arg m "$module/" '.Packages[] | select(startswith($m))' "$inst/config.json"); do
	builddir_replace "$pkg" "$module" "$repo"
	[ -f "$inst/builddir/$pkg/go.sum" ] || cp "$repo/go.sum" "$inst/builddir/$pkg/go.sum"
done
kpkg=$(jq -r .KernelPackage "$inst/config.json")
builddir_replace "$kpkg" "$kpkg" "$boarddir/kernel"
# gokrazy's own modules at the versions in boards/gokrazy-pins.txt.
while read -r pkg modver; do
	case "$pkg" in '' | '#'*) continue ;; esac
	bd=$inst/builddir/$pkg
	mkdir -p "$bd"
	[ -f "$bd/go.mod" ] || (cd "$bd" && $GO mod init "gokrazy/build/$board" >/dev/null 2>&1)
	(cd "$bd" && $GO mod edit -require="$modver")
done <"$repo/boards/gokrazy-pins.txt"

# 4. The full image.
echo "== gok overwrite --full $img ($image_bytes bytes)"
rm -f "$img"
(cd "$inst" && CGO_ENABLED=0 "$gok" --parent_dir "$parent" -i "$board" \
	overwrite --full "$img" --target_storage_bytes="$image_bytes")

# 5. /perm: partition 4, formatted with the default config in place.
read -r pstart psectors < <(partx -g -n 4 -o START,SECTORS "$img")
stage=$imagedir/perm-$board
rm -rf "$stage"
install -d -m 0755 "$stage/wardline"
install -m 0644 "$wardlined_config" "$stage/wardline/wardlined.json"
install -m 0600 "$inst/api-token" "$stage/wardline/api-token"
echo "== mkfs.ext4 /perm (offset $((pstart * 512)), $((psectors / 2)) KiB)"
mkfs.ext4 -q -F -L perm -E offset=$((pstart * 512)) -d "$stage" "$img" $((psectors / 2))k
rm -rf "$stage"
debugfs -R "cat /wardline/wardlined.json" "$img?offset=$((pstart * 512))" 2>/dev/null |
	cmp -s - "$wardlined_config" ||
	{ echo "image.sh: /perm/wardline/wardlined.json not readable back from $img" >&2; exit 1; }

echo "$RELEASE" >"$img.release"
end=$(date +%s)
echo "== image: $img"
echo "   release: $RELEASE"
echo "   size: $(stat -c %s "$img") bytes apparent, $(du -k "$img" | cut -f1) KiB allocated (sparse)"
echo "   built in $((end - start)) s"
