package bench

import (
	"os"
	"testing"

	"github.com/wardline/wardline/lab"
)

// TestMain lets the lab (time-to-detect figure) start its services by
// running the test binary again.
func TestMain(m *testing.M) {
	lab.RunServiceIfRequested()
	os.Exit(m.Run())
}
