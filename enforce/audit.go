package enforce

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// AuditRecord is one line of the audit log: who did what, why, when.
type AuditRecord struct {
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Who    string    `json:"who"`  // "policy:<id>", "reconciler", "rollout", "api:<token name>", "config"
	What   string    `json:"what"` // decision_add, decision_remove, decision_expire, would_block, stage, rollback, policy_create, policy_delete, guardrail_refused
	Policy string    `json:"policy,omitempty"`
	Target string    `json:"target,omitempty"`
	Why    string    `json:"why"`
	// Detail carries the decision, the stage change or the health
	// signals that decided a rollback.
	Detail any `json:"detail,omitempty"`
	// Prev is the SHA-256 of the previous line: editing or deleting a line
	// breaks the chain, which VerifyAudit reports.
	Prev string `json:"prev"`
}

// Audit is an append-only JSON-lines log. Every record is written and
// flushed to the file before the action it records is reported done.
type Audit struct {
	mu   sync.Mutex
	f    *os.File // nil: memory only (tests, no path configured)
	seq  uint64
	prev string
	tail []AuditRecord // the most recent records, for the API
	max  int
	errs uint64
}

// OpenAudit opens (creating) the log at path and continues its chain;
// path "" keeps the log in memory only.
func OpenAudit(path string) (*Audit, error) {
	a := &Audit{max: 1000, prev: zeroHash}
	if path == "" {
		return a, nil
	}
	if err := a.resume(path); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	a.f = f
	return a, nil
}

var zeroHash = hex.EncodeToString(make([]byte, sha256.Size))

// resume reads an existing log: the last sequence number and hash, and
// the tail. A torn last line (a crash mid-write) is reported, not
// silently continued.
func (a *Audit) resume(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read audit log: %w", err)
	}
	defer f.Close()
	recs, last, err := readAudit(f, path)
	if err != nil {
		return err
	}
	if n := len(recs); n > 0 {
		a.seq = recs[n-1].Seq
		a.prev = last
		a.tail = recs[max(0, n-a.max):]
	}
	return nil
}

// readAudit reads and verifies a log; it returns the records and the hash
// of the last line.
func readAudit(r io.Reader, name string) ([]AuditRecord, string, error) {
	br := bufio.NewReader(r)
	prev := zeroHash
	var recs []AuditRecord
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if len(b) == 0 && err == io.EOF {
			return recs, prev, nil
		}
		if err == io.EOF {
			return recs, prev, fmt.Errorf("audit log %s line %d: truncated (no newline): the last write did not finish", name, line)
		}
		if err != nil {
			return recs, prev, fmt.Errorf("audit log %s line %d: %w", name, line, err)
		}
		var rec AuditRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			return recs, prev, fmt.Errorf("audit log %s line %d: %v", name, line, err)
		}
		if rec.Prev != prev {
			return recs, prev, fmt.Errorf("audit log %s line %d (seq %d): chain broken: prev %s, the previous line hashes to %s", name, line, rec.Seq, rec.Prev, prev)
		}
		sum := sha256.Sum256(bytes.TrimSuffix(b, []byte("\n")))
		prev = hex.EncodeToString(sum[:])
		recs = append(recs, rec)
	}
}

// VerifyAudit reads the log at path and checks its hash chain.
func VerifyAudit(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("verify audit log: %w", err)
	}
	defer f.Close()
	recs, _, err := readAudit(f, path)
	return len(recs), err
}

// Log appends a record. A write error is returned and counted; the
// record stays in memory.
func (a *Audit) Log(rec AuditRecord) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seq++
	rec.Seq = a.seq
	if rec.Time.IsZero() {
		rec.Time = time.Now()
	}
	rec.Time = rec.Time.UTC()
	rec.Prev = a.prev
	b, err := json.Marshal(rec)
	if err != nil {
		a.errs++
		return fmt.Errorf("audit record %d: %w", rec.Seq, err)
	}
	sum := sha256.Sum256(b)
	a.prev = hex.EncodeToString(sum[:])
	a.tail = append(a.tail, rec)
	if len(a.tail) > 2*a.max {
		a.tail = append([]AuditRecord(nil), a.tail[len(a.tail)-a.max:]...)
	}
	if a.f == nil {
		return nil
	}
	if _, err := a.f.Write(append(b, '\n')); err != nil {
		a.errs++
		return fmt.Errorf("write audit record %d: %w", rec.Seq, err)
	}
	return nil
}

// Tail returns up to n recent records, oldest first.
func (a *Audit) Tail(n int) []AuditRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n <= 0 || n > len(a.tail) {
		n = len(a.tail)
	}
	return append([]AuditRecord(nil), a.tail[len(a.tail)-n:]...)
}

// Errors counts records that could not be written.
func (a *Audit) Errors() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.errs
}

// Close closes the file.
func (a *Audit) Close() error {
	if a.f == nil {
		return nil
	}
	return a.f.Close()
}
