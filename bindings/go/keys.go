package vmenc

/*
#include <vmenc/vmenc.h>
*/
import "C"

import (
	"unsafe"
)

// WrapAlg is the algorithm of a wrapped-key record.
type WrapAlg int

// Wrap algorithms.
const (
	WrapAES256GCM WrapAlg = 1
	WrapAES256KWP WrapAlg = 2
)

// WrapContext is what a wrapped key is bound to; a record opens only under
// the same context.
type WrapContext struct {
	VMUUID, DiskID, Purpose string
}

func (w WrapContext) c(cs *cstrings) C.vmenc_wrap_context {
	var c C.vmenc_wrap_context
	c.struct_size = C.uint32_t(unsafe.Sizeof(c))
	c.vm_uuid = cs.str(w.VMUUID, true)
	c.disk_id = cs.str(w.DiskID, true)
	c.purpose = cs.str(w.Purpose, true)
	return c
}

// DEK is a 64-byte XTS-AES-256 data-encryption key in secure memory.
type DEK struct{ h handle }

// KEK is a 32-byte AES-256 key-encryption key in secure memory.
type KEK struct{ h handle }

func newDEK(p *C.vmenc_dek) *DEK {
	d := &DEK{}
	d.h.init(unsafe.Pointer(p), freeNoErr(func(p unsafe.Pointer) { C.vmenc_dek_free((*C.vmenc_dek)(p)) }))
	setFinalizer(d, (*DEK).Close)
	return d
}

func newKEK(p *C.vmenc_kek) *KEK {
	k := &KEK{}
	k.h.init(unsafe.Pointer(p), freeNoErr(func(p unsafe.Pointer) { C.vmenc_kek_free((*C.vmenc_kek)(p)) }))
	setFinalizer(k, (*KEK).Close)
	return k
}

// GenerateDEK makes a fresh random DEK.
func GenerateDEK() (*DEK, error) {
	if initErr != nil {
		return nil, initErr
	}
	var out *C.vmenc_dek
	if err := check(C.vmenc_dek_generate(&out), "vmenc_dek_generate"); err != nil {
		return nil, err
	}
	return newDEK(out), nil
}

// NewDEK copies 64 bytes into a new DEK (Wipe your copy afterwards).
func NewDEK(key []byte) (*DEK, error) {
	if initErr != nil {
		return nil, initErr
	}
	var out *C.vmenc_dek
	if err := check(C.vmenc_dek_new_from_bytes(bytesPtr(key), C.size_t(len(key)), &out), "vmenc_dek_new_from_bytes"); err != nil {
		return nil, err
	}
	return newDEK(out), nil
}

// Close wipes and frees the key.
func (d *DEK) Close() error { return d.h.close() }

// String never shows key material.
func (d *DEK) String() string { return "vmenc.DEK{<in secure memory>}" }

// GoString never shows key material.
func (d *DEK) GoString() string { return d.String() }

// Equal compares two DEKs in constant time.
func (d *DEK) Equal(o *DEK) (bool, error) {
	a, err := d.h.use()
	if err != nil {
		return false, err
	}
	defer d.h.done()
	b, err := o.h.use()
	if err != nil {
		return false, err
	}
	defer o.h.done()
	s := C.vmenc_dek_equal((*C.vmenc_dek)(a), (*C.vmenc_dek)(b))
	if Status(s) == StatusKeyMismatch {
		return false, nil
	}
	return s == 0, check(s, "vmenc_dek_equal")
}

// XTS makes an XTS-AES-256 context from the DEK (the key stays in secure memory).
func (d *DEK) XTS(sectorSize uint32) (*XTS, error) {
	p, err := d.h.use()
	if err != nil {
		return nil, err
	}
	defer d.h.done()
	var out *C.vmenc_xts
	if err := check(C.vmenc_xts_new_from_dek((*C.vmenc_dek)(p), C.uint32_t(sectorSize), &out), "vmenc_xts_new_from_dek"); err != nil {
		return nil, err
	}
	return newXTS(out), nil
}

// Wrap wraps the DEK under kek locally into a record naming providerAlias and kekID.
func (d *DEK) Wrap(kek *KEK, alg WrapAlg, providerAlias, kekID string, ctx WrapContext) (*WrappedKey, error) {
	dp, err := d.h.use()
	if err != nil {
		return nil, err
	}
	defer d.h.done()
	kp, err := kek.h.use()
	if err != nil {
		return nil, err
	}
	defer kek.h.done()
	var cs cstrings
	defer cs.free()
	c := ctx.c(&cs)
	var out *C.vmenc_wrapped_key
	if err := check(C.vmenc_dek_wrap((*C.vmenc_dek)(dp), (*C.vmenc_kek)(kp), C.vmenc_wrap_alg(alg),
		cs.str(providerAlias, false), cs.str(kekID, false), &c, &out), "vmenc_dek_wrap"); err != nil {
		return nil, err
	}
	return newWrappedKey(out), nil
}

// GenerateKEK makes a fresh random KEK.
func GenerateKEK() (*KEK, error) {
	if initErr != nil {
		return nil, initErr
	}
	var out *C.vmenc_kek
	if err := check(C.vmenc_kek_generate(&out), "vmenc_kek_generate"); err != nil {
		return nil, err
	}
	return newKEK(out), nil
}

// NewKEK copies 32 bytes into a new KEK (Wipe your copy afterwards).
func NewKEK(key []byte) (*KEK, error) {
	if initErr != nil {
		return nil, initErr
	}
	var out *C.vmenc_kek
	if err := check(C.vmenc_kek_new_from_bytes(bytesPtr(key), C.size_t(len(key)), &out), "vmenc_kek_new_from_bytes"); err != nil {
		return nil, err
	}
	return newKEK(out), nil
}

// Close wipes and frees the key.
func (k *KEK) Close() error { return k.h.close() }

// String never shows key material.
func (k *KEK) String() string { return "vmenc.KEK{<in secure memory>}" }

// GoString never shows key material.
func (k *KEK) GoString() string { return k.String() }

// WrappedKey is a wrapped-key record (no plaintext key inside).
type WrappedKey struct{ h handle }

func newWrappedKey(p *C.vmenc_wrapped_key) *WrappedKey {
	w := &WrappedKey{}
	w.h.init(unsafe.Pointer(p), freeNoErr(func(p unsafe.Pointer) { C.vmenc_wrapped_key_free((*C.vmenc_wrapped_key)(p)) }))
	setFinalizer(w, (*WrappedKey).Close)
	return w
}

// ParseWrappedKey parses the binary form.
func ParseWrappedKey(data []byte) (*WrappedKey, error) {
	if initErr != nil {
		return nil, initErr
	}
	var out *C.vmenc_wrapped_key
	if err := check(C.vmenc_wrapped_key_parse(bytesPtr(data), C.size_t(len(data)), &out), "vmenc_wrapped_key_parse"); err != nil {
		return nil, err
	}
	return newWrappedKey(out), nil
}

// ParseWrappedKeyText parses the text form "vmwk1:<base64>".
func ParseWrappedKeyText(text string) (*WrappedKey, error) {
	if initErr != nil {
		return nil, initErr
	}
	var cs cstrings
	defer cs.free()
	var out *C.vmenc_wrapped_key
	if err := check(C.vmenc_wrapped_key_parse_text(cs.str(text, false), C.size_t(len(text)), &out), "vmenc_wrapped_key_parse_text"); err != nil {
		return nil, err
	}
	return newWrappedKey(out), nil
}

// Close frees the record.
func (w *WrappedKey) Close() error { return w.h.close() }

// Bytes returns the binary form.
func (w *WrappedKey) Bytes() ([]byte, error) {
	p, err := w.h.use()
	if err != nil {
		return nil, err
	}
	defer w.h.done()
	var out *C.uint8_t
	var n C.size_t
	if err := check(C.vmenc_wrapped_key_serialize((*C.vmenc_wrapped_key)(p), &out, &n), "vmenc_wrapped_key_serialize"); err != nil {
		return nil, err
	}
	defer C.vmenc_buffer_free(unsafe.Pointer(out))
	return C.GoBytes(unsafe.Pointer(out), C.int(n)), nil
}

// Text returns the text form.
func (w *WrappedKey) Text() (string, error) {
	p, err := w.h.use()
	if err != nil {
		return "", err
	}
	defer w.h.done()
	var out *C.char
	if err := check(C.vmenc_wrapped_key_to_text((*C.vmenc_wrapped_key)(p), &out), "vmenc_wrapped_key_to_text"); err != nil {
		return "", err
	}
	defer C.vmenc_buffer_free(unsafe.Pointer(out))
	return C.GoString(out), nil
}

// Alg, ProviderAlias and KEKID describe the record.
func (w *WrappedKey) Alg() WrapAlg {
	p, err := w.h.use()
	if err != nil {
		return 0
	}
	defer w.h.done()
	return WrapAlg(C.vmenc_wrapped_key_alg((*C.vmenc_wrapped_key)(p)))
}

// ProviderAlias is the key provider (cluster alias) the record names.
func (w *WrappedKey) ProviderAlias() string {
	p, err := w.h.use()
	if err != nil {
		return ""
	}
	defer w.h.done()
	return goStr(C.vmenc_wrapped_key_provider_alias((*C.vmenc_wrapped_key)(p)))
}

// KEKID is the KEK ID the record names.
func (w *WrappedKey) KEKID() string {
	p, err := w.h.use()
	if err != nil {
		return ""
	}
	defer w.h.done()
	return goStr(C.vmenc_wrapped_key_kek_id((*C.vmenc_wrapped_key)(p)))
}

// String shows the record's public header only.
func (w *WrappedKey) String() string {
	return "vmenc.WrappedKey{provider: " + w.ProviderAlias() + ", kek_id: " + w.KEKID() + "}"
}

// Unwrap recovers the DEK (ErrAuth for a wrong KEK, wrong context or tampering).
func (w *WrappedKey) Unwrap(kek *KEK, ctx WrapContext) (*DEK, error) {
	p, err := w.h.use()
	if err != nil {
		return nil, err
	}
	defer w.h.done()
	kp, err := kek.h.use()
	if err != nil {
		return nil, err
	}
	defer kek.h.done()
	var cs cstrings
	defer cs.free()
	c := ctx.c(&cs)
	var out *C.vmenc_dek
	if err := check(C.vmenc_wrapped_key_unwrap((*C.vmenc_wrapped_key)(p), (*C.vmenc_kek)(kp), &c, &out), "vmenc_wrapped_key_unwrap"); err != nil {
		return nil, err
	}
	return newDEK(out), nil
}
