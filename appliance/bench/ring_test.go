package bench

import (
	"os"
	"testing"
)

// TestRingNoUncountedLoss runs the ring benchmark small: everything the
// program wrote is delivered or counted.
func TestRingNoUncountedLoss(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to load BPF programs (CI runs as root)")
	}
	for _, ev := range []RingEvent{RingFlow, RingDNS} {
		r, err := Ring(ev, 100000, t.Logf)
		if err != nil {
			t.Fatal(err)
		}
		if r.Uncounted != 0 || r.Delivered+r.ReserveFailures != 100000 {
			t.Fatalf("%s: uncounted loss: %+v", ev, r)
		}
	}
}
