// Package bench holds Wardline's fast-path benchmarks (`wardline bench`,
// `make bench`). Every figure is a ratio against a baseline measured in the
// same run, repeated in alternating rounds and reported as the median with
// min–max (see docs/benchmarks.md and ../shared/docs/benchmarking.md).
package bench
