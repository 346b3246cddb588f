// Package vmenc is the Go binding of the vmenc VM-encryption library (cgo
// over the C ABI of libvmenc.so.0, linked through pkg-config).
//
// Every object that owns a C handle has New…/Close(). Close frees the C
// object and wipes the key material it holds; it waits for calls in flight
// on that object and is idempotent. A finalizer frees a handle the program
// forgot to close, as a safety net only. Objects that other objects borrow
// (a KeyManager under a Host, a VM under its Disks) stay alive until the last
// borrower is closed, so closing in the "wrong" order is safe.
//
// Errors are *Error values carrying the C status; errors.Is matches them
// against a sentinel per category (ErrUsage, ErrParse, ErrCrypto, ErrKMS,
// ErrPolicy, ErrAudit, ErrResource, ErrInternal), a few finer sentinels
// (ErrAuth, ErrKMSUnavailable, ErrKeyNotFound, ErrVMLocked, ErrDenied) and
// any Status constant.
//
// Key bytes live only in the C library's secure memory; no Go value ever
// holds them, and String/GoString never print secrets.
package vmenc

/*
#cgo pkg-config: vmenc
#include <stdlib.h>
#include <string.h>
#include <vmenc/vmenc.h>
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// MinVersion is the oldest library version (0xMMmmpp) this binding supports.
const MinVersion = 0x000100

// Version returns the runtime library's version string ("0.1.0").
func Version() string { return C.GoString(C.vmenc_version_string()) }

// VersionNumber returns the runtime library's version as 0xMMmmpp.
func VersionNumber() uint32 { return uint32(C.vmenc_version_number()) }

var initErr error

func init() {
	v := VersionNumber()
	if v>>16 != 0 || v < MinVersion {
		initErr = fmt.Errorf("vmenc: libvmenc %s is not supported by this binding (needs 0.x >= 0.1.0)", Version())
		return
	}
	if s := C.vmenc_init(); s != 0 {
		initErr = newError(Status(s), "vmenc_init", "")
	}
}

// Init reports whether the library loaded and initialised (libsodium, CPU
// detection) and is a version this binding supports. Every constructor
// returns this error too.
func Init() error { return initErr }

// RandomBytes returns n bytes from libsodium's CSPRNG.
func RandomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if n == 0 {
		return b, nil
	}
	if s := C.vmenc_random_bytes((*C.uint8_t)(unsafe.Pointer(&b[0])), C.size_t(n)); s != 0 {
		return nil, newError(Status(s), "vmenc_random_bytes", "")
	}
	return b, nil
}

// Wipe overwrites b with zeros in a way the compiler cannot remove. Go may
// have copied a slice's contents elsewhere (append growth, string
// conversions): keep secrets in one []byte you allocate once and Wipe it.
func Wipe(b []byte) {
	if len(b) > 0 {
		C.vmenc_memzero(unsafe.Pointer(&b[0]), C.size_t(len(b)))
	}
}

// ---- errors -------------------------------------------------------------------

// Status is a vmenc_status value. It implements error, so errors.Is(err,
// vmenc.StatusKeyNotFound) works.
type Status int

// Name returns the enumerator name, e.g. "VMENC_E_AUTH".
func (s Status) Name() string { return C.GoString(C.vmenc_status_name(C.int(s))) }

// Error returns the library's short description.
func (s Status) Error() string { return C.GoString(C.vmenc_strerror(C.int(s))) }

// Category is the block a status falls in.
type Category int

// Categories (vmenc_status_category).
const (
	CategoryOK       Category = 0
	CategoryUsage    Category = 1
	CategoryParse    Category = 2
	CategoryCrypto   Category = 3
	CategoryProvider Category = 4
	CategoryPolicy   Category = 5
	CategoryAudit    Category = 6
	CategoryResource Category = 7
	CategoryInternal Category = 9
	CategoryUnknown  Category = 10
)

// Category returns the category of s.
func (s Status) Category() Category { return Category(C.vmenc_status_category_of(C.int(s))) }

// Sentinel errors: one per category, and a few finer ones.
var (
	ErrUsage    = errors.New("vmenc: usage error")
	ErrParse    = errors.New("vmenc: malformed input")
	ErrCrypto   = errors.New("vmenc: cryptographic failure")
	ErrKMS      = errors.New("vmenc: key manager failure")
	ErrPolicy   = errors.New("vmenc: policy failure")
	ErrAudit    = errors.New("vmenc: audit failure")
	ErrResource = errors.New("vmenc: resource failure")
	ErrInternal = errors.New("vmenc: internal error")

	ErrAuth           = errors.New("vmenc: authentication failed")
	ErrKMSUnavailable = errors.New("vmenc: key manager unavailable")
	ErrKeyNotFound    = errors.New("vmenc: key not found")
	ErrVMLocked       = errors.New("vmenc: VM locked")
	ErrDenied         = errors.New("vmenc: denied")

	// ErrClosed is returned for a call on a closed object (a StatusBadState error).
	ErrClosed = &Error{Status: StatusBadState, Detail: "object is closed"}
)

var categorySentinel = map[Category]error{
	CategoryUsage: ErrUsage, CategoryParse: ErrParse, CategoryCrypto: ErrCrypto,
	CategoryProvider: ErrKMS, CategoryPolicy: ErrPolicy, CategoryAudit: ErrAudit,
	CategoryResource: ErrResource, CategoryInternal: ErrInternal,
}

var statusSentinel = map[Status]error{
	StatusAuth: ErrAuth, StatusWrongPassphrase: ErrAuth, StatusContextMismatch: ErrAuth,
	StatusKMSUnavailable: ErrKMSUnavailable, StatusKMSTimeout: ErrKMSUnavailable,
	StatusKeyNotFound: ErrKeyNotFound, StatusVMLocked: ErrVMLocked,
	StatusDenied: ErrDenied, StatusHostMode: ErrDenied,
}

// Error is a failed vmenc call.
type Error struct {
	Status Status // the C status
	Op     string // the C function, e.g. "vmenc_keymgr_get_kek"
	Detail string // extra context (a JSON path, a file and line), or ""
}

func newError(s Status, op, detail string) error {
	return &Error{Status: s, Op: op, Detail: detail}
}

func check(s C.vmenc_status, op string) error {
	if s == 0 {
		return nil
	}
	return newError(Status(s), op, "")
}

// opText turns the C function behind an error into the operation's words
// ("vmenc_vm_rekey_shallow" -> "vm rekey shallow"): a Go caller reads what
// failed, not which C symbol. Op keeps the symbol for logs and debugging.
func opText(op string) string {
	return strings.ReplaceAll(strings.TrimPrefix(op, "vmenc_"), "_", " ")
}

// Error implements error: "vmenc: <operation>: <reason> (<status name>)[: detail]".
func (e *Error) Error() string {
	msg := fmt.Sprintf("vmenc: %s: %s (%s)", opText(e.Op), e.Status.Error(), e.Status.Name())
	if e.Op == "" {
		msg = fmt.Sprintf("vmenc: %s (%s)", e.Status.Error(), e.Status.Name())
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// Category returns the category of the status.
func (e *Error) Category() Category { return e.Status.Category() }

// Is matches the category sentinel, the finer sentinels and Status values.
func (e *Error) Is(target error) bool {
	switch t := target.(type) {
	case Status:
		return t == e.Status
	case *Error:
		return t.Status == e.Status
	}
	if categorySentinel[e.Category()] == target {
		return true
	}
	return statusSentinel[e.Status] == target
}

// ---- handles ------------------------------------------------------------------

// handle owns one C pointer. Calls hold the read lock for their duration;
// Close takes the write lock, so it waits for calls in flight. Borrowers
// (objects that need this one alive) hold a reference; the C object is
// freed when it is closed and no reference is left.
type handle struct {
	mu      sync.RWMutex
	p       unsafe.Pointer
	free    func(unsafe.Pointer) error
	refs    int
	closed  bool
	pmu     sync.Mutex // guards parents (borrowed while the read lock is held)
	parents []*handle
}

func (h *handle) init(p unsafe.Pointer, free func(unsafe.Pointer) error) {
	h.p, h.free = p, free
}

// use returns the pointer with the read lock held; call done() after.
func (h *handle) use() (unsafe.Pointer, error) {
	h.mu.RLock()
	if h.closed || h.p == nil {
		h.mu.RUnlock()
		return nil, ErrClosed
	}
	return h.p, nil
}

func (h *handle) done() { h.mu.RUnlock() }

func (h *handle) retain() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || h.p == nil {
		return ErrClosed
	}
	h.refs++
	return nil
}

// share takes a reference for a new borrower on behalf of an existing one:
// unlike retain it succeeds on a handle closed by its owner but still kept
// alive by borrowers (a VM's host view after the view was closed). The
// caller must itself hold a reference, so the C object cannot go away.
func (h *handle) share() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.p == nil {
		return ErrClosed
	}
	h.refs++
	return nil
}

func (h *handle) release() {
	h.mu.Lock()
	h.refs--
	destroy := h.closed && h.refs == 0
	h.mu.Unlock()
	if destroy {
		h.destroy()
	}
}

func (h *handle) borrow(parent *handle) error {
	if err := parent.retain(); err != nil {
		return err
	}
	h.pmu.Lock()
	h.parents = append(h.parents, parent)
	h.pmu.Unlock()
	return nil
}

func (h *handle) destroy() error {
	h.mu.Lock()
	p := h.p
	h.p = nil
	h.mu.Unlock()
	h.pmu.Lock()
	parents := h.parents
	h.parents = nil
	h.pmu.Unlock()
	var err error
	if p != nil && h.free != nil {
		err = h.free(p)
	}
	for _, parent := range parents {
		parent.release()
	}
	return err
}

func (h *handle) close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	now := h.refs == 0
	h.mu.Unlock()
	if now {
		return h.destroy()
	}
	return nil
}

func freeNoErr(f func(unsafe.Pointer)) func(unsafe.Pointer) error {
	return func(p unsafe.Pointer) error { f(p); return nil }
}

// setFinalizer arranges for close to run if the program forgets; Close
// clears it.
func setFinalizer[T any](obj *T, close func(*T) error) {
	runtime.SetFinalizer(obj, func(o *T) { _ = close(o) })
}

// ---- C helpers ---------------------------------------------------------------

type cstrings struct {
	ps   []unsafe.Pointer
	wipe []wipeRange
}

// str returns a C copy of s ("" gives NULL when optional).
func (c *cstrings) str(s string, optional bool) *C.char {
	if s == "" && optional {
		return nil
	}
	p := C.CString(s)
	c.ps = append(c.ps, unsafe.Pointer(p))
	return p
}

// secret returns a C copy of b, wiped and freed by free().
func (c *cstrings) secret(b []byte) (unsafe.Pointer, C.size_t) {
	if b == nil {
		return nil, 0
	}
	p := C.malloc(C.size_t(len(b) + 1))
	if len(b) > 0 {
		C.memcpy(p, unsafe.Pointer(&b[0]), C.size_t(len(b)))
	}
	c.ps = append(c.ps, p)
	c.wipe = append(c.wipe, wipeRange{p, len(b)})
	return p, C.size_t(len(b))
}

// array returns a C NULL-terminated array of C strings.
func (c *cstrings) array(ss []string) **C.char {
	n := len(ss) + 1
	arr := (*[1 << 20]*C.char)(C.malloc(C.size_t(n) * C.size_t(unsafe.Sizeof((*C.char)(nil)))))[:n:n]
	for i, s := range ss {
		arr[i] = c.str(s, false)
	}
	arr[len(ss)] = nil
	c.ps = append(c.ps, unsafe.Pointer(&arr[0]))
	return &arr[0]
}

type wipeRange struct {
	p unsafe.Pointer
	n int
}

func (c *cstrings) free() {
	for _, w := range c.wipe {
		C.vmenc_memzero(w.p, C.size_t(w.n))
	}
	for _, p := range c.ps {
		C.free(p)
	}
	c.ps, c.wipe = nil, nil
}

func bytesPtr(b []byte) *C.uint8_t {
	if len(b) == 0 {
		return nil
	}
	return (*C.uint8_t)(unsafe.Pointer(&b[0]))
}

func goStr(p *C.char) string { return C.GoString(p) }

// DefaultTimeout bounds key-manager calls whose context has no deadline.
var DefaultTimeout = 10 * time.Second

// timeoutMs maps a context's deadline to the C timeout_ms parameter. The C
// call cannot be interrupted: cancelling a context without a deadline only
// takes effect before the call starts.
func timeoutMs(ctx context.Context) (C.uint32_t, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	d := DefaultTimeout
	if dl, ok := ctx.Deadline(); ok {
		d = time.Until(dl)
		if d <= 0 {
			return 0, context.DeadlineExceeded
		}
	}
	ms := d.Milliseconds()
	if ms > 0xFFFFFFFF {
		ms = 0xFFFFFFFF
	}
	if ms == 0 {
		ms = 1
	}
	return C.uint32_t(ms), nil
}

func boolInt(b bool) C.int {
	if b {
		return 1
	}
	return 0
}
