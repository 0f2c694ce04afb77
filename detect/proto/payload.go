package proto

import (
	"bytes"
	"fmt"
)

// SSHIdent is an SSH identification string (RFC 4253 section 4.2):
// "SSH-<Proto>-<Software>[ <Comments>]".
type SSHIdent struct {
	Proto    string // protocol version, "2.0" (or "1.99", "1.5")
	Software string // software version, e.g. "OpenSSH_9.6p1"
	Comments string // after the first space, e.g. "Ubuntu-3ubuntu13"
	Offset   int    // where the "SSH-" line starts (servers may send lines before it)
}

// sshMaxLine is the RFC 4253 limit on the identification line, CR LF
// included.
const sshMaxLine = 255

// SSHBanner returns the software version of the SSH identification line
// at the start of b ("OpenSSH_9.6p1" for "SSH-2.0-OpenSSH_9.6p1 Ubuntu"),
// and whether b holds a complete, valid one. ParseSSHIdent gives the
// details and the error.
func SSHBanner(b []byte) (software string, ok bool) {
	id, err := ParseSSHIdent(b)
	if err != nil {
		return "", false
	}
	return id.Software, true
}

// ParseSSHIdent finds and parses the SSH identification line in the first
// payload of a connection. Lines before it that do not start with "SSH-"
// are skipped (RFC 4253 allows servers to send them). A line cut before its
// end yields what it holds with an error wrapping ErrTruncated.
func ParseSSHIdent(b []byte) (SSHIdent, error) {
	var r SSHIdent
	off := 0
	for {
		if off >= len(b) {
			return r, truncErr("ssh", "identification line", off, "no SSH- line")
		}
		if len(b)-off < 4 && bytes.HasPrefix([]byte("SSH-"), b[off:]) {
			return r, truncErr("ssh", "identification line", off, "cut inside SSH-")
		}
		if bytes.HasPrefix(b[off:], []byte("SSH-")) {
			break
		}
		// A line before the identification: printable text only.
		nl := bytes.IndexByte(b[off:], '\n')
		end := len(b)
		if nl >= 0 {
			end = off + nl
		}
		for i := off; i < end; i++ {
			if c := b[i]; (c < 0x20 || c > 0x7e) && c != '\r' && c != '\t' {
				return r, malErr("ssh", "identification line", i, fmt.Sprintf("byte %#02x before any SSH- line: not SSH", c))
			}
		}
		if nl < 0 {
			if len(b)-off >= sshMaxLine {
				return r, malErr("ssh", "identification line", off, "no line starts with SSH-")
			}
			return r, truncErr("ssh", "identification line", off, "no SSH- line yet")
		}
		off += nl + 1
		if off > 8*sshMaxLine {
			return r, malErr("ssh", "identification line", off, "no SSH- line in the first lines")
		}
	}
	r.Offset = off
	line := b[off:]
	cut := true
	if nl := bytes.IndexByte(line, '\n'); nl >= 0 {
		line, cut = line[:nl], false
		line = bytes.TrimSuffix(line, []byte{'\r'})
	}
	if len(line) > sshMaxLine {
		return r, malErr("ssh", "identification line", off, fmt.Sprintf("longer than %d bytes", sshMaxLine))
	}
	for i, c := range line {
		if c < 0x20 || c > 0x7e {
			return r, malErr("ssh", "identification line", off+i, fmt.Sprintf("byte %#02x is not printable US-ASCII", c))
		}
	}
	s := string(line) // one allocation for all fields
	rest := s[4:]
	dash := -1
	for i := 0; i < len(rest); i++ {
		if rest[i] == '-' {
			dash = i
			break
		}
		if rest[i] == ' ' {
			break
		}
	}
	if dash < 0 {
		if cut {
			r.Proto = rest
			return r, truncErr("ssh", "identification line", off, "cut before the software version")
		}
		return r, malErr("ssh", "protocol version", off+4, "no '-' after it")
	}
	r.Proto = rest[:dash]
	sw := rest[dash+1:]
	if sp := indexByte(sw, ' '); sp >= 0 {
		r.Software, r.Comments = sw[:sp], sw[sp+1:]
	} else {
		r.Software = sw
	}
	if r.Proto == "" {
		return r, malErr("ssh", "protocol version", off+4, "empty")
	}
	if cut {
		return r, truncErr("ssh", "identification line", off+len(line), "no line end")
	}
	if r.Software == "" {
		return r, malErr("ssh", "software version", off+4+dash+1, "empty")
	}
	return r, nil
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// Stratum methods StratumMethod recognises without allocating.
var stratumMethods = []string{
	// Stratum v1 (Bitcoin and most pools), client to server
	"mining.subscribe", "mining.authorize", "mining.submit", "mining.configure",
	"mining.extranonce.subscribe", "mining.suggest_difficulty", "mining.suggest_target",
	"mining.get_transactions", "mining.capabilities",
	// server to client
	"mining.notify", "mining.set_difficulty", "mining.set_extranonce",
	"mining.set_target", "mining.set_version_mask",
	// CryptoNote / Monero stratum (XMRig and its pools)
	"login", "getjob", "keepalived", "job",
	// Ethereum stratum (EthereumStratum / eth-proxy)
	"eth_submitLogin", "eth_getWork", "eth_submitWork", "eth_submitHashrate",
}

// StratumMethod reports whether b starts with a Stratum mining JSON-RPC
// message (Stratum v1 "mining.*" methods, the Monero/XMRig "login",
// "getjob", "keepalived" and "job", or the Ethereum stratum "eth_submitLogin"
// family) and returns its method. The message must be a JSON object (leading
// whitespace allowed) whose "method" member is a string; the snippet may be
// cut after the method. Unknown "mining.*" methods are accepted too (their
// name is then a fresh string); anything else is not Stratum. A few
// lookalike JSON-RPC protocols use these names: the detector should also
// weigh the port, the peer and later traffic.
func StratumMethod(b []byte) (method string, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return "", false
	}
	// Find the "method" key at the top level of the object; nested
	// objects (params of a previous member) are skipped.
	depth := 0
	inStr := false
	for i < len(b) {
		c := b[i]
		if inStr {
			switch c {
			case '\\':
				i++
			case '"':
				inStr = false
			}
			i++
			continue
		}
		switch c {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return "", false // end of the object without a method
			}
		case '"':
			if depth == 1 && bytes.HasPrefix(b[i:], []byte(`"method"`)) {
				return stratumValue(b, i+len(`"method"`))
			}
			inStr = true
		}
		i++
	}
	return "", false
}

// stratumValue reads `: "name"` at off and matches name.
func stratumValue(b []byte, off int) (string, bool) {
	off = skipSpace(b, off)
	if off >= len(b) || b[off] != ':' {
		return "", false
	}
	off = skipSpace(b, off+1)
	if off >= len(b) || b[off] != '"' {
		return "", false
	}
	off++
	end := bytes.IndexByte(b[off:], '"')
	if end < 0 || end > 64 {
		return "", false
	}
	name := b[off : off+end]
	for _, m := range stratumMethods {
		if string(name) == m {
			return m, true
		}
	}
	if bytes.HasPrefix(name, []byte("mining.")) && len(name) > len("mining.") {
		for _, c := range name {
			if !(c == '.' || c == '_' || isAlnum(c)) {
				return "", false
			}
		}
		return string(name), true
	}
	return "", false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}
