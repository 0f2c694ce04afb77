package proto

import (
	"errors"
	"fmt"
)

// Sentinel errors that callers branch on; a *ParseError wraps exactly one.
var (
	// ErrTruncated: the input ends before the structure it announces (a
	// snippet cut at the snippet length, a TLS record or DNS message longer
	// than what was captured). What was parsed before the cut is returned.
	ErrTruncated = errors.New("truncated")
	// ErrMalformed: the input is not a valid instance of the protocol.
	ErrMalformed = errors.New("malformed")
)

// ParseError says what could not be parsed, where and why.
type ParseError struct {
	Proto  string // "dns", "tls", "http", "ssh", "quic"
	What   string // the element being parsed, e.g. "answer 2 name"
	Offset int    // byte offset of that element in the parser's input
	Kind   error  // ErrTruncated or ErrMalformed
	Err    error  // the underlying cause, if any (e.g. from dnsmessage)
	Reason string // a human reason when Err is nil
}

func (e *ParseError) Error() string {
	why := e.Reason
	if e.Err != nil {
		if why != "" {
			why += ": "
		}
		why += e.Err.Error()
	}
	if why == "" {
		return fmt.Sprintf("%s: %s at offset %d: %v", e.Proto, e.What, e.Offset, e.Kind)
	}
	return fmt.Sprintf("%s: %s at offset %d: %v: %s", e.Proto, e.What, e.Offset, e.Kind, why)
}

// Unwrap lets errors.Is find both the kind (ErrTruncated / ErrMalformed) and
// the underlying cause.
func (e *ParseError) Unwrap() []error {
	if e.Err != nil {
		return []error{e.Kind, e.Err}
	}
	return []error{e.Kind}
}

func truncErr(proto, what string, off int, reason string) error {
	return &ParseError{Proto: proto, What: what, Offset: off, Kind: ErrTruncated, Reason: reason}
}

func malErr(proto, what string, off int, reason string) error {
	return &ParseError{Proto: proto, What: what, Offset: off, Kind: ErrMalformed, Reason: reason}
}
