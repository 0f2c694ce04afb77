package mining

import (
	"net/netip"
	"testing"
	"time"

	"github.com/wardline/wardline/dataplane/event"
	"github.com/wardline/wardline/detect"
	"github.com/wardline/wardline/detect/enrich"
)

func TestStratum(t *testing.T) {
	var got []*detect.Alert
	d := New(0, detect.Env{Emit: func(a *detect.Alert) { got = append(got, a) }, Inv: enrich.New(nil, nil)})
	k := event.FlowKey{Src: netip.MustParseAddr("198.18.0.10"), Dst: netip.MustParseAddr("203.0.113.33"), SrcPort: 40000, DstPort: 3333, Proto: 6}
	t0 := time.Unix(1795639458, 0)
	d.OnPayload(&detect.PayloadEvent{Time: t0, Key: k, Service: "ssh", Detail: "OpenSSH"})
	d.OnPayload(&detect.PayloadEvent{Time: t0, Key: k, Service: "stratum", Detail: "mining.subscribe"})
	d.OnPayload(&detect.PayloadEvent{Time: t0.Add(time.Minute), Key: k, Service: "stratum", Detail: "mining.authorize"})
	if len(got) != 1 || got[0].Type != detect.TypeMining || got[0].Attacker != k.Src || got[0].Risk < 60 {
		t.Fatalf("alerts %+v, want one mining alert", got)
	}
	k.DstPort = 443
	d.OnPayload(&detect.PayloadEvent{Time: t0, Key: k, Service: "stratum", Detail: "login"})
	if len(got) != 1 {
		t.Fatal("same client and pool alerted twice within the window")
	}
}
