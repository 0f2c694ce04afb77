package config

import (
	"os"
	"strings"
	"testing"
)

// FuzzParse: any input is either a valid configuration or an error that
// names the file; never a panic.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"reference.json", "minimal.json"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"bridge": {}}`))
	f.Add([]byte(`{"dataplane": {"xdp_mode": "native", "ring_buffer_bytes": -1}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse("fuzz.json", b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.json") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if c.Dataplane.Mode == "" || c.Bridge.Inside == c.Bridge.Outside || c.Management.Listen.Port() == 0 {
			t.Fatalf("accepted an invalid config: %+v", c)
		}
		if err := c.Dataplane.Options().Validate(); err != nil {
			t.Fatalf("config valid but dataplane options not: %v", err)
		}
	})
}
