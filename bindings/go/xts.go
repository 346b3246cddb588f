package vmenc

/*
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <vmenc/vmenc.h>

// vmenc_go_xts_iov mirrors the Go type XTSIOV field for field (Go's int is
// pointer-sized on every platform Go supports, as intptr_t is); xts.go
// asserts the size and offsets at compile time.
typedef struct vmenc_go_xts_iov {
	uint64_t first_sector;
	intptr_t off;
	intptr_t len;
} vmenc_go_xts_iov;

enum {
	vmenc_go_xts_iov_size = sizeof(vmenc_go_xts_iov),
	vmenc_go_xts_iov_off = offsetof(vmenc_go_xts_iov, off),
	vmenc_go_xts_iov_len = offsetof(vmenc_go_xts_iov, len),
};

// vmenc_go_xts_iov_run turns offsets into the batch buffers into the
// library's vmenc_xts_iov array and makes one vectored call. cgo forbids Go
// code to store Go pointers in C memory, and Go memory passed to C to hold
// Go pointers; so Go passes the two buffers (pointer-free []byte) and the
// offsets (pointer-free), and only this C code, during the call, forms the
// pointers, in C memory (its stack, or malloc for long vectors), dropped
// before it returns. Go has checked every offset against the buffers (for
// a useful message); each entry is read once and checked again here, so a
// racing writer to the Go slice cannot make C leave the buffers.
static vmenc_status vmenc_go_xts_iov_run(const vmenc_xts *x, int enc, const uint8_t *src,
                                         uint8_t *dst, size_t buf_len, const vmenc_go_xts_iov *g,
                                         size_t n) {
	enum { ON_STACK = 128 };
	vmenc_xts_iov stack[ON_STACK], *iov = stack;
	if (n > ON_STACK) {
		if (n > SIZE_MAX / sizeof(*iov))
			return VMENC_E_NOMEM;
		iov = malloc(n * sizeof(*iov));
		if (iov == NULL)
			return VMENC_E_NOMEM;
	}
	vmenc_status s = VMENC_OK;
	for (size_t i = 0; i < n && s == VMENC_OK; i++) {
		vmenc_go_xts_iov e = g[i];
		if (e.off < 0 || e.len < 0 || (size_t)e.off > buf_len || (size_t)e.len > buf_len - (size_t)e.off) {
			s = VMENC_E_INVALID_ARG;
			break;
		}
		iov[i].first_sector = e.first_sector;
		iov[i].in = src != NULL ? src + e.off : NULL;
		iov[i].out = dst != NULL ? dst + e.off : NULL;
		iov[i].len = (size_t)e.len;
	}
	if (s == VMENC_OK)
		s = enc ? vmenc_xts_encrypt_iov(x, iov, n) : vmenc_xts_decrypt_iov(x, iov, n);
	if (iov != stack)
		free(iov);
	return s;
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// XTS key sizes and sector bounds.
const (
	XTSKeyBytes256 = 64
	XTSKeyBytes128 = 32
	XTSMinSector   = 512
	XTSMaxSector   = 65536
)

// XTS is an expanded XTS-AES key for one sector size (IEEE 1619, tweak =
// sector number, "plain64"). Safe for concurrent use by many goroutines.
type XTS struct{ h handle }

func newXTS(p *C.vmenc_xts) *XTS {
	x := &XTS{}
	x.h.init(unsafe.Pointer(p), freeNoErr(func(p unsafe.Pointer) { C.vmenc_xts_free((*C.vmenc_xts)(p)) }))
	setFinalizer(x, (*XTS).Close)
	return x
}

// NewXTS expands key (64 bytes: XTS-AES-256, 32: XTS-AES-128) for sectors
// of sectorSize bytes. impl names a backend ("vaes-avx512", "vaes-avx2",
// "aesni", "portable") or is "" for the fastest the CPU supports. The key
// schedule lives in secure memory; Wipe your copy of key afterwards.
func NewXTS(key []byte, sectorSize uint32, impl string) (*XTS, error) {
	if initErr != nil {
		return nil, initErr
	}
	var cs cstrings
	defer cs.free()
	var out *C.vmenc_xts
	if s := C.vmenc_xts_new_impl(bytesPtr(key), C.size_t(len(key)), C.uint32_t(sectorSize),
		cs.str(impl, true), &out); s != 0 {
		return nil, newError(Status(s), "vmenc_xts_new", "")
	}
	return newXTS(out), nil
}

// XTSImplAvailable reports whether backend impl runs on this CPU/OS.
func XTSImplAvailable(impl string) (bool, error) {
	var cs cstrings
	defer cs.free()
	s := C.vmenc_xts_impl_available(cs.str(impl, false))
	if Status(s) == StatusCPUUnsupported {
		return false, nil
	}
	return s == 0, check(s, "vmenc_xts_impl_available")
}

// Close wipes and frees the key schedule.
func (x *XTS) Close() error { return x.h.close() }

// Impl names the backend in use.
func (x *XTS) Impl() string {
	p, err := x.h.use()
	if err != nil {
		return "closed"
	}
	defer x.h.done()
	return goStr(C.vmenc_xts_impl_name((*C.vmenc_xts)(p)))
}

// SectorSize returns the sector size.
func (x *XTS) SectorSize() uint32 {
	p, err := x.h.use()
	if err != nil {
		return 0
	}
	defer x.h.done()
	return uint32(C.vmenc_xts_sector_size((*C.vmenc_xts)(p)))
}

// String never shows key material.
func (x *XTS) String() string {
	return fmt.Sprintf("vmenc.XTS{impl: %s, sector_size: %d}", x.Impl(), x.SectorSize())
}

func (x *XTS) run(enc bool, firstSector uint64, dst, src []byte) error {
	if len(dst) != len(src) {
		return &Error{Status: StatusBadLength, Op: "xts", Detail: "dst and src lengths differ"}
	}
	p, err := x.h.use()
	if err != nil {
		return err
	}
	defer x.h.done()
	var s C.vmenc_status
	if enc {
		s = C.vmenc_xts_encrypt((*C.vmenc_xts)(p), C.uint64_t(firstSector), bytesPtr(src), bytesPtr(dst), C.size_t(len(src)))
		return check(s, "vmenc_xts_encrypt")
	}
	s = C.vmenc_xts_decrypt((*C.vmenc_xts)(p), C.uint64_t(firstSector), bytesPtr(src), bytesPtr(dst), C.size_t(len(src)))
	return check(s, "vmenc_xts_decrypt")
}

// Encrypt encrypts src (whole sectors) into dst (same length; may be src
// itself), the first sector numbered firstSector.
func (x *XTS) Encrypt(firstSector uint64, dst, src []byte) error {
	return x.run(true, firstSector, dst, src)
}

// Decrypt is the inverse of Encrypt.
func (x *XTS) Decrypt(firstSector uint64, dst, src []byte) error {
	return x.run(false, firstSector, dst, src)
}

// EncryptUnit encrypts one data unit (>= 16 bytes, ciphertext stealing)
// with a raw 16-byte tweak.
func (x *XTS) EncryptUnit(tweak [16]byte, dst, src []byte) error {
	if len(dst) != len(src) {
		return &Error{Status: StatusBadLength, Op: "xts", Detail: "dst and src lengths differ"}
	}
	p, err := x.h.use()
	if err != nil {
		return err
	}
	defer x.h.done()
	return check(C.vmenc_xts_encrypt_unit((*C.vmenc_xts)(p), (*C.uint8_t)(unsafe.Pointer(&tweak[0])),
		bytesPtr(src), bytesPtr(dst), C.size_t(len(src))), "vmenc_xts_encrypt_unit")
}

// XTSIOV is one I/O of a vectored call: the Len bytes at Off in the batch
// buffers (whole sectors), the first sector numbered FirstSector.
type XTSIOV struct {
	FirstSector uint64
	Off         int
	Len         int
}

// The C helper reads []XTSIOV in place; a layout mismatch fails the build.
var (
	_ [unsafe.Sizeof(XTSIOV{}) - C.vmenc_go_xts_iov_size]struct{}
	_ [C.vmenc_go_xts_iov_size - unsafe.Sizeof(XTSIOV{})]struct{}
	_ [unsafe.Offsetof(XTSIOV{}.Off) - C.vmenc_go_xts_iov_off]struct{}
	_ [C.vmenc_go_xts_iov_off - unsafe.Offsetof(XTSIOV{}.Off)]struct{}
	_ [unsafe.Offsetof(XTSIOV{}.Len) - C.vmenc_go_xts_iov_len]struct{}
	_ [C.vmenc_go_xts_iov_len - unsafe.Offsetof(XTSIOV{}.Len)]struct{}
)

// EncryptIOV encrypts a batch of I/Os with one cgo call
// (vmenc_xts_encrypt_iov): for each entry, src[Off:Off+Len] into
// dst[Off:Off+Len], entries in order, exactly as that many Encrypt calls.
// The batch lives in one buffer (cgo lets C see a Go buffer passed as an
// argument, not Go pointers stored in an array), typically a pool of I/O
// slots sliced from one allocation. dst and src have the same length and
// are the same slice (in place) or do not overlap. Every entry is checked
// (bounds here, sector rules in C) before anything is written: one bad
// entry returns an error and leaves dst untouched. An empty iov does
// nothing.
func (x *XTS) EncryptIOV(dst, src []byte, iov []XTSIOV) error {
	return x.runIOV(true, dst, src, iov)
}

// DecryptIOV is the inverse of EncryptIOV, with the same checks.
func (x *XTS) DecryptIOV(dst, src []byte, iov []XTSIOV) error {
	return x.runIOV(false, dst, src, iov)
}

func (x *XTS) runIOV(enc bool, dst, src []byte, iov []XTSIOV) error {
	op := "vmenc_xts_decrypt_iov"
	if enc {
		op = "vmenc_xts_encrypt_iov"
	}
	if len(dst) != len(src) {
		return &Error{Status: StatusBadLength, Op: op, Detail: "dst and src lengths differ"}
	}
	if len(src) > 0 {
		d, s := uintptr(unsafe.Pointer(&dst[0])), uintptr(unsafe.Pointer(&src[0]))
		if d != s && (d < s && s-d < uintptr(len(src)) || s < d && d-s < uintptr(len(src))) {
			return &Error{Status: StatusInvalidArg, Op: op, Detail: "dst and src partly overlap"}
		}
	}
	for i, v := range iov {
		if v.Off < 0 || v.Len < 0 || v.Off > len(src)-v.Len {
			return &Error{Status: StatusInvalidArg, Op: op,
				Detail: fmt.Sprintf("iov[%d] (off %d, len %d) outside the %d-byte buffers", i, v.Off, v.Len, len(src))}
		}
	}
	p, err := x.h.use()
	if err != nil {
		return err
	}
	defer x.h.done()
	if len(iov) == 0 {
		return nil
	}
	var e C.int
	if enc {
		e = 1
	}
	s := C.vmenc_go_xts_iov_run((*C.vmenc_xts)(p), e, bytesPtr(src), bytesPtr(dst), C.size_t(len(src)),
		(*C.vmenc_go_xts_iov)(unsafe.Pointer(&iov[0])), C.size_t(len(iov)))
	return check(s, op)
}
