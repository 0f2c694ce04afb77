// Package proto parses the payload snippets that the XDP fast path (or its
// offline pcap twin) hands to the detection engine: DNS messages, TLS
// ClientHellos (with JA3 and JA4 fingerprints), HTTP/1.x request heads, the
// first client payload of other TCP flows (SSH banners, Stratum mining
// JSON-RPC) and, for the offline path, the ClientHello inside a QUIC Initial.
//
// It is for the detection engine (package detect) and its detectors; it knows
// nothing about flows or events. Every parser:
//   - reads a byte slice that may be cut short (a snippet is at most the
//     configured snippet length): it returns what it could parse together with
//     an error wrapping ErrTruncated;
//   - never panics on arbitrary input (each has a fuzz target) and reports
//     malformed input as a *ParseError naming the protocol, the element, the
//     byte offset and the reason, wrapping ErrMalformed;
//   - does not keep a reference to its input: strings in the results are
//     copies, so the snippet buffer may be reused as soon as it returns.
//
// DNS is parsed with golang.org/x/net/dns/dnsmessage, not by hand.
package proto
