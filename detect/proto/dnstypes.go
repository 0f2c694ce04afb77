package proto

import "strconv"

// DNSType is a DNS RR type (QTYPE / TYPE).
type DNSType uint16

// RR types the detectors look at by name.
const (
	DNSTypeA     DNSType = 1
	DNSTypeNS    DNSType = 2
	DNSTypeCNAME DNSType = 5
	DNSTypeSOA   DNSType = 6
	DNSTypeNULL  DNSType = 10
	DNSTypePTR   DNSType = 12
	DNSTypeMX    DNSType = 15
	DNSTypeTXT   DNSType = 16
	DNSTypeAAAA  DNSType = 28
	DNSTypeSRV   DNSType = 33
	DNSTypeOPT   DNSType = 41
	DNSTypeSVCB  DNSType = 64
	DNSTypeHTTPS DNSType = 65
	DNSTypeANY   DNSType = 255
)

// dnsTypeNames are the mnemonics as Suricata writes them in EVE (rrtype).
var dnsTypeNames = map[DNSType]string{
	1: "A", 2: "NS", 3: "MD", 4: "MF", 5: "CNAME", 6: "SOA", 7: "MB", 8: "MG",
	9: "MR", 10: "NULL", 11: "WKS", 12: "PTR", 13: "HINFO", 14: "MINFO",
	15: "MX", 16: "TXT", 17: "RP", 18: "AFSDB", 19: "X25", 20: "ISDN",
	21: "RT", 22: "NSAP", 23: "NSAPPTR", 24: "SIG", 25: "KEY", 26: "PX",
	27: "GPOS", 28: "AAAA", 29: "LOC", 30: "NXT", 33: "SRV", 34: "ATMA",
	35: "NAPTR", 36: "KX", 37: "CERT", 38: "A6", 39: "DNAME", 41: "OPT",
	42: "APL", 43: "DS", 44: "SSHFP", 45: "IPSECKEY", 46: "RRSIG", 47: "NSEC",
	48: "DNSKEY", 49: "DHCID", 50: "NSEC3", 51: "NSEC3PARAM", 52: "TLSA",
	55: "HIP", 59: "CDS", 60: "CDNSKEY", 64: "SVCB", 65: "HTTPS", 99: "SPF",
	249: "TKEY", 250: "TSIG", 251: "IXFR", 252: "AXFR", 253: "MAILB",
	254: "MAILA", 255: "ANY", 256: "URI", 257: "CAA",
}

// String returns the type's mnemonic ("A", "AAAA", "TXT", "NULL", ...) or
// its number for types without one.
func (t DNSType) String() string {
	if s, ok := dnsTypeNames[t]; ok {
		return s
	}
	return strconv.Itoa(int(t))
}

// DNSRCode is the 4-bit response code of the DNS header.
type DNSRCode uint8

const (
	DNSRCodeNoError  DNSRCode = 0
	DNSRCodeFormErr  DNSRCode = 1
	DNSRCodeServFail DNSRCode = 2
	DNSRCodeNXDomain DNSRCode = 3
	DNSRCodeNotImp   DNSRCode = 4
	DNSRCodeRefused  DNSRCode = 5
)

var dnsRCodeNames = [...]string{
	"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
	"YXDOMAIN", "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE",
}

// String returns the code as Suricata writes it in EVE ("NOERROR",
// "NXDOMAIN", ...), or its number for the unassigned codes 11-15.
func (r DNSRCode) String() string {
	if int(r) < len(dnsRCodeNames) {
		return dnsRCodeNames[r]
	}
	return strconv.Itoa(int(r))
}
