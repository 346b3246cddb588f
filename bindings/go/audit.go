package vmenc

/*
#include <stdlib.h>
#include <string.h>
#include <vmenc/vmenc.h>
*/
import "C"

import (
	"unsafe"
)

// Outcome of an audited operation.
type Outcome int

// Outcomes.
const (
	OutcomeSuccess Outcome = 0
	OutcomeDenied  Outcome = 1
	OutcomeFailed  Outcome = 2
)

// Event is one audit event. Never put secrets in it: key IDs, not key bytes.
type Event struct {
	TimeMs      uint64 // 0 = now
	Principal   string
	Operation   string
	Target      string
	KeyProvider string
	KeyIDs      []string
	Outcome     Outcome
	Status      Status
	Reason      string
}

func (e *Event) c(cs *cstrings) C.vmenc_audit_event {
	var c C.vmenc_audit_event
	c.struct_size = C.uint32_t(unsafe.Sizeof(c))
	c.time_ms = C.uint64_t(e.TimeMs)
	c.principal = cs.str(e.Principal, false)
	c.operation = cs.str(e.Operation, false)
	c.target = cs.str(e.Target, true)
	c.key_provider = cs.str(e.KeyProvider, true)
	c.key_ids = cs.array(e.KeyIDs)
	c.num_key_ids = C.size_t(len(e.KeyIDs))
	c.outcome = C.vmenc_audit_outcome(e.Outcome)
	c.status = C.int32_t(e.Status)
	c.reason = cs.str(e.Reason, true)
	return c
}

// AuditLogOptions open a hash-chained log.
type AuditLogOptions struct {
	Path      string
	Key       []byte // chain key, 16..64 bytes; copied to secure memory, Wipe yours
	NoSync    bool   // VMENC_AUDIT_FSYNC_NEVER (tests)
	Recover   bool
	VerifyAll bool
}

// AuditLog is an open, locked log file. Safe for concurrent use.
type AuditLog struct{ h handle }

// OpenAuditLog opens (or creates) a log for appending.
func OpenAuditLog(o AuditLogOptions) (*AuditLog, error) {
	if initErr != nil {
		return nil, initErr
	}
	var cs cstrings
	defer cs.free()
	var c C.vmenc_audit_log_options
	c.struct_size = C.uint32_t(unsafe.Sizeof(c))
	c.path = cs.str(o.Path, false)
	kp, kn := cs.secret(o.Key)
	c.key, c.key_len = (*C.uint8_t)(kp), kn
	if o.NoSync {
		c.fsync = C.VMENC_AUDIT_FSYNC_NEVER
	}
	if o.Recover {
		c.flags |= C.VMENC_AUDIT_LOG_RECOVER
	}
	if o.VerifyAll {
		c.flags |= C.VMENC_AUDIT_LOG_VERIFY_ALL
	}
	var out *C.vmenc_audit_log
	if err := check(C.vmenc_audit_log_open(&c, &out), "vmenc_audit_log_open"); err != nil {
		return nil, err
	}
	l := &AuditLog{}
	l.h.init(unsafe.Pointer(out), freeNoErr(func(p unsafe.Pointer) { C.vmenc_audit_log_free((*C.vmenc_audit_log)(p)) }))
	setFinalizer(l, (*AuditLog).Close)
	return l, nil
}

// Close syncs, unlocks and closes the log and wipes the key.
func (l *AuditLog) Close() error { return l.h.close() }

// Append records one event and returns its sequence number.
func (l *AuditLog) Append(e Event) (uint64, error) {
	p, err := l.h.use()
	if err != nil {
		return 0, err
	}
	defer l.h.done()
	var cs cstrings
	defer cs.free()
	c := e.c(&cs)
	var seq C.uint64_t
	err = check(C.vmenc_audit_log_append((*C.vmenc_audit_log)(p), &c, &seq), "vmenc_audit_log_append")
	return uint64(seq), err
}

// Position returns the last sequence number and its hash.
func (l *AuditLog) Position() (uint64, [32]byte, error) {
	var h [32]byte
	p, err := l.h.use()
	if err != nil {
		return 0, h, err
	}
	defer l.h.done()
	var seq C.uint64_t
	err = check(C.vmenc_audit_log_position((*C.vmenc_audit_log)(p), &seq, (*C.uint8_t)(unsafe.Pointer(&h[0]))), "vmenc_audit_log_position")
	return uint64(seq), h, err
}

// Audit is a dispatcher delivering events to its logs. Safe for concurrent use.
type Audit struct {
	h    handle
	logs []*AuditLog
}

// NewAudit makes a dispatcher with no sinks.
func NewAudit() (*Audit, error) {
	if initErr != nil {
		return nil, initErr
	}
	var out *C.vmenc_audit
	if err := check(C.vmenc_audit_new(&out), "vmenc_audit_new"); err != nil {
		return nil, err
	}
	a := &Audit{}
	a.h.init(unsafe.Pointer(out), freeNoErr(func(p unsafe.Pointer) { C.vmenc_audit_free((*C.vmenc_audit)(p)) }))
	setFinalizer(a, (*Audit).Close)
	return a, nil
}

// Close frees the dispatcher (not its logs) once nothing borrows it.
func (a *Audit) Close() error { return a.h.close() }

// AddLog adds a log sink; the log stays open while the dispatcher lives.
func (a *Audit) AddLog(l *AuditLog) error {
	if err := l.h.retain(); err != nil {
		return err
	}
	p, err := a.h.use()
	if err != nil {
		l.h.release()
		return err
	}
	defer a.h.done()
	lp, err := l.h.use()
	if err != nil {
		l.h.release()
		return err
	}
	s := C.vmenc_audit_add_log((*C.vmenc_audit)(p), (*C.vmenc_audit_log)(lp))
	l.h.done()
	if err := check(s, "vmenc_audit_add_log"); err != nil {
		l.h.release()
		return err
	}
	a.h.pmu.Lock()
	a.h.parents = append(a.h.parents, &l.h)
	a.h.pmu.Unlock()
	return nil
}

// Emit validates e and hands it to every sink.
func (a *Audit) Emit(e Event) error {
	p, err := a.h.use()
	if err != nil {
		return err
	}
	defer a.h.done()
	var cs cstrings
	defer cs.free()
	c := e.c(&cs)
	return check(C.vmenc_audit_emit((*C.vmenc_audit)(p), &c), "vmenc_audit_emit")
}

// Defect is what the verifier found first.
type Defect int

// Defects.
const (
	DefectNone Defect = iota
	DefectEdited
	DefectMalformed
	DefectDeleted
	DefectReordered
	DefectInserted
	DefectDuplicated
	DefectTruncated
	DefectTorn
	DefectWrongKey
)

// String names the defect ("edited").
func (d Defect) String() string { return goStr(C.vmenc_audit_defect_name(C.vmenc_audit_defect(d))) }

// VerifyResult says whether a chain is intact, and if not what and where.
type VerifyResult struct {
	Defect              Defect
	NumRecords          uint64
	BadFile             int
	BadIndex, BadOffset uint64
	BadSeq, LastSeq     uint64
	LastHash            [32]byte
}

// VerifyAuditFiles checks files forming one chain (oldest first). A defect
// gives a non-nil *Error (ErrAudit, or ErrAuth for a wrong key) together
// with the filled result; I/O problems give only the error.
func VerifyAuditFiles(key []byte, paths []string, expectedLastSeq uint64) (VerifyResult, error) {
	if initErr != nil {
		return VerifyResult{}, initErr
	}
	var cs cstrings
	defer cs.free()
	var o C.vmenc_audit_verify_options
	o.struct_size = C.uint32_t(unsafe.Sizeof(o))
	kp, kn := cs.secret(key)
	o.key, o.key_len = (*C.uint8_t)(kp), kn
	o.expected_last_seq = C.uint64_t(expectedLastSeq)
	var r C.vmenc_audit_verify_result
	r.struct_size = C.uint32_t(unsafe.Sizeof(r))
	arr := cs.array(paths)
	s := C.vmenc_audit_verify_files(&o, arr, C.size_t(len(paths)), &r)
	res := VerifyResult{Defect(r.defect), uint64(r.num_records), int(r.bad_file), uint64(r.bad_index),
		uint64(r.bad_offset), uint64(r.bad_seq), uint64(r.last_seq), [32]byte{}}
	C.memcpy(unsafe.Pointer(&res.LastHash[0]), unsafe.Pointer(&r.last_hash[0]), 32)
	return res, check(s, "vmenc_audit_verify_files")
}
