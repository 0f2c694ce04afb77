package proto

import (
	"errors"
	"testing"
)

func TestStratumMethod(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
	}{
		{`{"id": 1, "method": "mining.subscribe", "params": ["cpuminer/2.5.1"]}` + "\n", "mining.subscribe"},
		{`{"params": ["worker.1", "x"], "id": 2, "method": "mining.authorize"}`, "mining.authorize"},
		{`  {"id":4,"method":"mining.submit","params":["w","j","00","5f","01"]}`, "mining.submit"},
		{`{"id":null,"method":"mining.notify","params":["1",true]}`, "mining.notify"},
		{`{"id":null,"method":"mining.set_difficulty","params":[1]}`, "mining.set_difficulty"},
		{`{"id":1,"jsonrpc":"2.0","method":"login","params":{"login":"4A...","pass":"x","agent":"XMRig/6.21.0"}}`, "login"},
		{`{"id":1,"method":"mining.fancy_new_thing","params":[]}`, "mining.fancy_new_thing"},
		{`{"worker":"eth1.0","jsonrpc":"2.0","params":["0xabc","x"],"id":2,"method":"eth_submitLogin"}`, "eth_submitLogin"},
		// the method may be the last thing in a cut snippet
		{`{"id":1,"method":"mining.subscribe"`, "mining.subscribe"},
		// a nested "method" inside params is not the message's method
		{`{"id":1,"params":{"method":"mining.subscribe"},"method":"getblock"}`, ""},
		{`{"id":1,"method":"eth_getBalance","params":[]}`, ""},
		{`{"jsonrpc":"2.0","method":"textDocument/didOpen"}`, ""},
		{`GET / HTTP/1.1`, ""},
		{`{"id":1,"method":`, ""},
		{`["mining.subscribe"]`, ""},
		{``, ""},
	} {
		m, ok := StratumMethod([]byte(c.in))
		if m != c.want || ok != (c.want != "") {
			t.Errorf("%q: %q %v, want %q", c.in, m, ok, c.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { StratumMethod([]byte(`{"id": 1, "method": "mining.subscribe", "params": []}`)) }); n != 0 {
		t.Errorf("StratumMethod allocates %v times", n)
	}
}

func TestParseSSHIdent(t *testing.T) {
	for _, c := range []struct {
		in                       string
		proto, software, comment string
		kind                     error
	}{
		{"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n", "2.0", "OpenSSH_9.6p1", "Ubuntu-3ubuntu13", nil},
		{"SSH-2.0-libssh2_1.10.0\r\n\x00\x00\x04", "2.0", "libssh2_1.10.0", "", nil},
		{"SSH-1.99-Cisco-1.25\n", "1.99", "Cisco-1.25", "", nil},
		{"Please wait\r\nSSH-2.0-dropbear\r\n", "2.0", "dropbear", "", nil},
		{"SSH-2.0-Go", "2.0", "Go", "", ErrTruncated},
		{"SSH-2", "2", "", "", ErrTruncated},
		{"SS", "", "", "", ErrTruncated},
		{"SSH-2.0-\r\n", "2.0", "", "", ErrMalformed},
		{"\x16\x03\x01\x00", "", "", "", ErrMalformed},
		{"SSH-2.0-bad\x01name\r\n", "", "", "", ErrMalformed},
	} {
		b, err := ParseSSHIdent([]byte(c.in))
		if c.kind == nil && err != nil || c.kind != nil && !errors.Is(err, c.kind) {
			t.Errorf("%q: err %v, want %v", c.in, err, c.kind)
		}
		if b.Proto != c.proto || b.Software != c.software || b.Comments != c.comment {
			t.Errorf("%q: %+v", c.in, b)
		}
	}
}

func TestSSHBanner(t *testing.T) {
	if sw, ok := SSHBanner([]byte("SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n")); !ok || sw != "OpenSSH_9.6p1" {
		t.Errorf("%q %v", sw, ok)
	}
	if sw, ok := SSHBanner([]byte("SSH-2.0-Open")); ok {
		t.Errorf("cut banner: %q %v", sw, ok)
	}
}
