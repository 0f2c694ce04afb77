#!/bin/sh
# figures.sh LOG — summarise the "FIGURE name value" lines TestBootImage
# logs (make bench-image): per figure, the number of samples, min, median
# and max.
set -eu
log=${1:?usage: figures.sh LOG}
printf '%-36s %3s %8s %8s %8s\n' figure n min median max
grep -o 'FIGURE [a-z_]* [0-9.]*' "$log" | awk '{print $2}' | sort -u | while read -r name; do
	grep -o "FIGURE $name [0-9.]*" "$log" | awk '{print $3}' | sort -n >/tmp/figures.$$
	n=$(wc -l </tmp/figures.$$)
	min=$(head -1 /tmp/figures.$$)
	max=$(tail -1 /tmp/figures.$$)
	med=$(awk -v n="$n" 'NR == int((n + 1) / 2) {a = $1} NR == int(n / 2) + 1 {b = $1} END {printf "%.1f", (n % 2) ? a : (a + b) / 2}' /tmp/figures.$$)
	printf '%-36s %3d %8s %8s %8s\n' "$name" "$n" "$min" "$med" "$max"
done
rm -f /tmp/figures.$$
