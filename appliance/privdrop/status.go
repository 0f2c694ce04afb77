package privdrop

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Status is the capability state of one thread, as the kernel reports it
// in /proc/<pid>/task/<tid>/status.
type Status struct {
	Inh, Prm, Eff, Bnd, Amb Set  // CapInh, CapPrm, CapEff, CapBnd, CapAmb
	NoNewPrivs              bool // NoNewPrivs (Linux 4.10)
}

// Current returns the capability state of the process as
// /proc/self/status reports it, which is that of its main thread. Drop
// changes every thread alike; AllThreads shows them one by one.
func Current() (Status, error) {
	return readStatus("/proc/self/status")
}

// AllThreads returns the capability state of every thread of the process,
// by thread id, from /proc/self/task/*/status. A thread that exits while
// it is read is left out.
func AllThreads() (map[int]Status, error) {
	return allThreads("/proc/self/task")
}

func allThreads(taskDir string) (map[int]Status, error) {
	entries, err := os.ReadDir(taskDir)
	if err != nil {
		return nil, fmt.Errorf("privdrop: list threads: %w", err)
	}
	all := make(map[int]Status, len(entries))
	for _, e := range entries {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue // not a thread directory
		}
		st, err := readStatus(filepath.Join(taskDir, e.Name(), "status"))
		if errors.Is(err, fs.ErrNotExist) {
			continue // the thread exited after ReadDir
		}
		if err != nil {
			return nil, err
		}
		all[tid] = st
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("privdrop: list threads: no thread status under %s", taskDir)
	}
	return all, nil
}

func readStatus(path string) (Status, error) {
	f, err := os.Open(path)
	if err != nil {
		return Status{}, fmt.Errorf("privdrop: read %s: %w", path, err)
	}
	defer f.Close()
	st, err := parseStatus(f)
	if err != nil {
		return Status{}, fmt.Errorf("privdrop: parse %s: %w", path, err)
	}
	return st, nil
}

// parseStatus reads the capability lines of a /proc/<pid>/status file
// ("CapEff:\t000001fffeffffff", "NoNewPrivs:\t0") and ignores the rest.
// Every one of those fields must be present exactly once: a missing line
// means a kernel too old for Drop, or not a status file at all.
func parseStatus(r io.Reader) (Status, error) {
	var st Status
	caps := map[string]*Set{
		"CapInh": &st.Inh,
		"CapPrm": &st.Prm,
		"CapEff": &st.Eff,
		"CapBnd": &st.Bnd,
		"CapAmb": &st.Amb,
	}
	seen := make(map[string]bool)
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		field, isCap := caps[key]
		if !isCap && key != "NoNewPrivs" {
			continue
		}
		if seen[key] {
			return Status{}, fmt.Errorf("line %d: %s appears twice", n, key)
		}
		seen[key] = true
		if isCap {
			// The kernel prints 16 hex digits; ParseUint rejects
			// anything that does not fit in 64 bits.
			v, err := strconv.ParseUint(val, 16, 64)
			if err != nil {
				return Status{}, fmt.Errorf("line %d: %s %q is not a 64-bit hex mask", n, key, val)
			}
			*field = Set(v)
			continue
		}
		switch val {
		case "0":
			st.NoNewPrivs = false
		case "1":
			st.NoNewPrivs = true
		default:
			return Status{}, fmt.Errorf("line %d: NoNewPrivs %q is not 0 or 1", n, val)
		}
	}
	if err := sc.Err(); err != nil {
		return Status{}, err
	}
	for _, key := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs"} {
		if !seen[key] {
			return Status{}, fmt.Errorf("no %s line", key)
		}
	}
	return st, nil
}
