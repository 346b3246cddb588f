package vmenc

/*
#include <vmenc/vmenc.h>
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
