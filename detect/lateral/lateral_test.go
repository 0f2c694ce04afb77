package lateral

import (
	"net/netip"
	"testing"
	"time"

	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect"
	"github.com/wardline/wardline/detect/enrich"
)

func session(src, dst netip.Addr, port uint16, at time.Time) *detect.Conn {
	f := event.Flow{Key: event.FlowKey{Src: src, Dst: dst, SrcPort: 50000, DstPort: port, Proto: event.ProtoTCP}, Final: true,
		FirstSeen: at, LastSeen: at.Add(time.Second), TCPFlags: [2]uint8{0x1b, 0x1b}, FirstFlags: event.TCPSyn, Packets: [2]uint64{10, 10}}
	c := detect.NewConn(&f)
	return &c
}

func TestFanOut(t *testing.T) {
	var got []*detect.Alert
	inv := enrich.New([]netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")}, nil)
	d := New(Config{}, detect.Env{Emit: func(a *detect.Alert) { got = append(got, a) }, Inv: inv})
	admin := netip.MustParseAddr("198.18.0.5")
	attacker := netip.MustParseAddr("198.18.0.10")
	t0 := time.Unix(1795639458, 0)
	// The admin host's routine: the same 12 servers every day for two
	// days; by the third day they are its baseline.
	for day := 0; day < 3; day++ {
		for i := 0; i < 12; i++ {
			d.OnConn(session(admin, netip.AddrFrom4([4]byte{198, 18, 0, byte(20 + i)}), 22, t0.Add(time.Duration(day)*25*time.Hour+time.Duration(i)*time.Second)))
		}
	}
	if len(got) != 1 || got[0].Attacker != admin {
		t.Fatalf("day one of the admin is new (one alert), later days are baseline: got %d alerts", len(got))
	}
	got = nil
	// An infected workstation fans out over SSH, SMB and RDP.
	ports := []uint16{22, 445, 3389}
	for i := 0; i < 20; i++ {
		d.OnConn(session(attacker, netip.AddrFrom4([4]byte{198, 18, 0, byte(20 + i)}), ports[i%3], t0.Add(time.Duration(i)*400*time.Millisecond)))
	}
	if len(got) != 1 {
		t.Fatalf("%d alerts, want 1", len(got))
	}
	a := got[0]
	if a.Type != detect.TypeLateral || a.Attacker != attacker || a.Subtype != "internal_fanout_rdp_smb_ssh" || a.Risk < 50 {
		t.Errorf("alert %+v", a)
	}
	// Outbound SSH is not lateral movement.
	got = nil
	for i := 0; i < 20; i++ {
		d.OnConn(session(attacker, netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), 22, t0.Add(time.Hour)))
	}
	if len(got) != 0 {
		t.Errorf("outbound sessions raised %d alerts", len(got))
	}
}
