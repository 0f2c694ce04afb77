// Package enrich tells the detection engine what an address is: inside the
// home networks or not, which asset of the inventory (name, owner, role,
// criticality), and which names the network itself revealed for it (DNS
// answers, DHCP host names). Every alert names its assets through it.
package enrich

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Asset is one inventory entry.
type Asset struct {
	Prefix      netip.Prefix `json:"prefix"`
	Name        string       `json:"name"`
	Owner       string       `json:"owner,omitempty"`
	Role        string       `json:"role,omitempty"`        // e.g. "server", "workstation", "dns", "gateway"
	Criticality int          `json:"criticality,omitempty"` // 1 (low) .. 5 (critical)
}

// Inventory maps addresses to assets (longest prefix wins) and keeps the
// names learned passively.
type Inventory struct {
	home   []netip.Prefix
	assets []Asset // sorted by prefix length, longest first

	mu       sync.RWMutex
	learned  map[netip.Addr]learnedName
	maxLearn int
}

type learnedName struct {
	name   string
	source string // "dns" or "dhcp"
	seen   time.Time
}

// New returns an inventory for the home networks and assets.
func New(home []netip.Prefix, assets []Asset) *Inventory {
	as := append([]Asset(nil), assets...)
	sort.SliceStable(as, func(i, j int) bool { return as[i].Prefix.Bits() > as[j].Prefix.Bits() })
	hs := make([]netip.Prefix, len(home))
	for i, p := range home {
		hs[i] = p.Masked()
	}
	return &Inventory{home: hs, assets: as, learned: map[netip.Addr]learnedName{}, maxLearn: 65536}
}

// IsHome reports whether a is inside a home network.
func (inv *Inventory) IsHome(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range inv.home {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// HomeNets returns the home networks.
func (inv *Inventory) HomeNets() []netip.Prefix { return inv.home }

// Asset returns the inventory entry for a, if any.
func (inv *Inventory) Asset(a netip.Addr) (Asset, bool) {
	a = a.Unmap()
	for _, as := range inv.assets {
		if as.Prefix.Contains(a) {
			return as, true
		}
	}
	return Asset{}, false
}

// Name returns the best name for a: the inventory's, else a name learned
// from the network, else "".
func (inv *Inventory) Name(a netip.Addr) string {
	if as, ok := inv.Asset(a); ok && as.Name != "" {
		return as.Name
	}
	inv.mu.RLock()
	l, ok := inv.learned[a.Unmap()]
	inv.mu.RUnlock()
	if ok {
		return l.name
	}
	return ""
}

// Criticality returns the asset's criticality (0 when unknown).
func (inv *Inventory) Criticality(a netip.Addr) int {
	if as, ok := inv.Asset(a); ok {
		return as.Criticality
	}
	return 0
}

// Learn records a name the network revealed for a (source: "dns" for an
// answer record, "dhcp" for a client's host name). DHCP names win over DNS
// answers for home hosts; the table is bounded (when full, an arbitrary
// eighth is forgotten).
func (inv *Inventory) Learn(a netip.Addr, name, source string, at time.Time) {
	if !a.IsValid() || name == "" {
		return
	}
	a = a.Unmap()
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if old, ok := inv.learned[a]; ok && old.source == "dhcp" && source != "dhcp" {
		return
	}
	if len(inv.learned) >= inv.maxLearn {
		// Full: forget an arbitrary eighth (map order is random), so
		// that a flood of names costs O(1) per name amortised.
		n := inv.maxLearn / 8
		for k := range inv.learned {
			if n == 0 {
				break
			}
			delete(inv.learned, k)
			n--
		}
	}
	inv.learned[a] = learnedName{name: strings.TrimSuffix(strings.ToLower(name), "."), source: source, seen: at}
}

// Learned returns how many names were learned.
func (inv *Inventory) Learned() int {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return len(inv.learned)
}

// LoadAssets reads an asset inventory: CSV (header: prefix,name,owner,role,
// criticality; prefix may be a bare address) or JSON (a list of Asset).
// Errors name the file and the line or entry.
func LoadAssets(path string) ([]Asset, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read asset inventory: %w", err)
	}
	defer f.Close()
	if strings.EqualFold(filepath.Ext(path), ".json") {
		return parseAssetsJSON(path, f)
	}
	return parseAssetsCSV(path, f)
}

func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func checkAsset(a *Asset) error {
	if a.Name == "" {
		return errors.New("name is empty")
	}
	if a.Criticality < 0 || a.Criticality > 5 {
		return fmt.Errorf("criticality %d is outside 0..5", a.Criticality)
	}
	return nil
}

func parseAssetsCSV(name string, r io.Reader) ([]Asset, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	rows, err := cr.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(rows) == 0 {
		return nil, nil
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[strings.ToLower(strings.TrimSpace(h))] = i
	}
	for _, need := range []string{"prefix", "name"} {
		if _, ok := col[need]; !ok {
			return nil, fmt.Errorf("%s:1: header lacks the %q column (want prefix,name,owner,role,criticality)", name, need)
		}
	}
	get := func(row []string, c string) string {
		if i, ok := col[c]; ok && i < len(row) {
			return strings.TrimSpace(row[i])
		}
		return ""
	}
	var out []Asset
	for i, row := range rows[1:] {
		line := i + 2
		p, err := parsePrefix(get(row, "prefix"))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: prefix %q: %v", name, line, get(row, "prefix"), err)
		}
		a := Asset{Prefix: p, Name: get(row, "name"), Owner: get(row, "owner"), Role: get(row, "role")}
		if c := get(row, "criticality"); c != "" {
			if a.Criticality, err = strconv.Atoi(c); err != nil {
				return nil, fmt.Errorf("%s:%d: criticality %q is not a number", name, line, c)
			}
		}
		if err := checkAsset(&a); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", name, line, err)
		}
		out = append(out, a)
	}
	return out, nil
}

func parseAssetsJSON(name string, r io.Reader) ([]Asset, error) {
	var raw []struct {
		Prefix      string `json:"prefix"`
		Name        string `json:"name"`
		Owner       string `json:"owner"`
		Role        string `json:"role"`
		Criticality int    `json:"criticality"`
	}
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var out []Asset
	for i, x := range raw {
		p, err := parsePrefix(x.Prefix)
		if err != nil {
			return nil, fmt.Errorf("%s: entry %d: prefix %q: %v", name, i, x.Prefix, err)
		}
		a := Asset{Prefix: p, Name: x.Name, Owner: x.Owner, Role: x.Role, Criticality: x.Criticality}
		if err := checkAsset(&a); err != nil {
			return nil, fmt.Errorf("%s: entry %d: %v", name, i, err)
		}
		out = append(out, a)
	}
	return out, nil
}
