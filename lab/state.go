package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// stateVersion is written to every state file; bump it when the format
// changes incompatibly.
const stateVersion = 1

const stateFileName = "state.json"

// stateFile is the on-disk form of a Lab.
type stateFile struct {
	Version        int
	Complete       bool // false while Up runs, or if it was killed half-way
	ID             string
	Dir            string
	Config         Config
	Box            Box
	Hosts          map[string]*Host
	OfficeSwitch   Switch
	InternetSwitch Switch
	Resolver       netip.Addr
	Names          map[string]string
	Namespaces     []string
	Processes      []*Process
}

// save writes the lab's state file atomically (temporary file, fsync,
// rename), so a reader never sees half a file.
func (l *Lab) save(complete bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := stateFile{
		Version: stateVersion, Complete: complete,
		ID: l.ID, Dir: l.Dir, Config: l.Config, Box: l.Box, Hosts: l.Hosts,
		OfficeSwitch: l.OfficeSwitch, InternetSwitch: l.InternetSwitch,
		Resolver: l.Resolver, Names: l.Names, Namespaces: l.Namespaces,
		Processes: l.procs,
	}
	b, err := json.MarshalIndent(st, "", "\t")
	if err != nil {
		return fmt.Errorf("encode lab state: %w", err)
	}
	path := filepath.Join(l.Dir, stateFileName)
	if err := writeFileAtomic(path, append(b, '\n')); err != nil {
		return fmt.Errorf("write lab state %s: %w", path, err)
	}
	return nil
}

func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // fails harmlessly after the rename
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// Load reads the state of lab id from stateDir ("" means DefaultStateDir),
// as written by Up in another process, so that the lab can be inspected
// (Status) or torn down (Down). A lab whose Up was killed half-way loads
// too; Down then deletes every namespace it planned.
func Load(stateDir, id string) (*Lab, error) {
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	if err := validateID(id); err != nil {
		return nil, err
	}
	path := filepath.Join(stateDir, id, stateFileName)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load lab %s: %w", id, err)
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("load lab %s: parse %s: %w", id, path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("load lab %s: %s has version %d, want %d", id, path, st.Version, stateVersion)
	}
	l := &Lab{
		ID: st.ID, Dir: filepath.Join(stateDir, id), Config: st.Config, Box: st.Box, Hosts: st.Hosts,
		OfficeSwitch: st.OfficeSwitch, InternetSwitch: st.InternetSwitch,
		Names: st.Names, Namespaces: st.Namespaces, procs: st.Processes,
		Resolver: st.Resolver, incomplete: !st.Complete,
	}
	if l.Hosts == nil {
		l.Hosts = map[string]*Host{}
	}
	l.bind()
	return l, nil
}

// List returns the IDs of the labs with a state file in stateDir ("" means
// DefaultStateDir), sorted. A missing stateDir holds no labs.
func List(stateDir string) ([]string, error) {
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	entries, err := os.ReadDir(stateDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list labs: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if !e.IsDir() || validateID(e.Name()) != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(stateDir, e.Name(), stateFileName)); err == nil {
			ids = append(ids, e.Name())
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// labNSRE matches the namespace names a lab creates.
var labNSRE = regexp.MustCompile(`^[a-z][a-z0-9]{1,11}-(osw|isw|box|router|mgmt|resolver|server[12]|web|dns|c2|mirror|client[1-9][0-9]*)$`)

// Sweep is a best-effort cleanup for labs whose state is lost (a test
// binary killed before its cleanup ran): it kills every process in, and
// deletes, each namespace named "<id>-<role>" (with one of the lab's
// roles) whose lab ID starts with prefix and whose lo carries the lab's
// mark (the alias "wardline-lab <id>"), so that namespaces of other
// projects with lab-like names are left alone. Sweep("wl") removes every lab with a generated ID on the machine,
// including labs that other processes are using right now; pass a full
// lab ID to remove one lab. It does not touch state directories (use List,
// Load and Down for labs that have one).
func Sweep(prefix string) error {
	if prefix == "" || strings.Contains(prefix, "-") {
		return fmt.Errorf("sweep: invalid lab ID prefix %q", prefix)
	}
	all, err := namespacesWithPrefix(prefix)
	if err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	var names []string
	for _, n := range all {
		if labNSRE.MatchString(n) && isMarked(n) {
			names = append(names, n)
		}
	}
	errs := []error{killInNamespaces(names)}
	for _, n := range names {
		errs = append(errs, deleteNamespace(n))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sweep %s: %w", prefix, err)
	}
	return nil
}

// hostJSON is Host with the MAC as text.
type hostJSON struct {
	Role, NS, Iface    string
	IPv4, IPv6         netip.Addr
	MAC                string
	Gateway4, Gateway6 netip.Addr
}

// MarshalJSON writes the MAC as "02:00:…" instead of base64.
func (h *Host) MarshalJSON() ([]byte, error) {
	return json.Marshal(hostJSON{
		Role: h.Role, NS: h.NS, Iface: h.Iface, IPv4: h.IPv4, IPv6: h.IPv6,
		MAC: h.MAC.String(), Gateway4: h.Gateway4, Gateway6: h.Gateway6,
	})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (h *Host) UnmarshalJSON(b []byte) error {
	var j hostJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*h = Host{Role: j.Role, NS: j.NS, Iface: j.Iface, IPv4: j.IPv4, IPv6: j.IPv6, Gateway4: j.Gateway4, Gateway6: j.Gateway6}
	if j.MAC != "" {
		mac, err := net.ParseMAC(j.MAC)
		if err != nil {
			return fmt.Errorf("host %s: %w", j.Role, err)
		}
		h.MAC = mac
	}
	return nil
}
