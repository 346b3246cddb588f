package vmenc

// progress.go - context.Context for the long operations (in-place encrypt,
// decrypt, deep rekey, storage-policy application): the library calls a
// progress function after every segment, and a nonzero answer stops the
// conversion cleanly and resumably (VMENC_E_INTERRUPTED). This file holds
// the one exported Go function (cgo allows only declarations in the
// preamble of a file with //export); its C trampoline is in vm.go.

/*
#include <stdint.h>
#include <stdlib.h>
#include <vmenc/vmenc.h>
*/
import "C"

import (
	"context"
	"errors"
	"runtime/cgo"
	"unsafe"
)

//export goVmencProgress
func goVmencProgress(ctx unsafe.Pointer, diskID *C.char, p *C.vmenc_convert_progress) C.int {
	c, ok := cgo.Handle(*(*C.uintptr_t)(ctx)).Value().(context.Context)
	if !ok || c.Err() != nil {
		return 1
	}
	return 0
}

// withProgress runs f with apply options whose progress function stops the
// conversion once ctx is done; a conversion stopped that way returns
// ctx.Err() (context.Canceled or context.DeadlineExceeded), resumable.
func withProgress(ctx context.Context, segmentBytes uint64, f func(o *C.vmenc_apply_options) error) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	h := cgo.NewHandle(ctx)
	defer h.Delete()
	// The handle travels in C memory (a Go pointer may not, and an integer
	// posing as a pointer is what go vet rightly flags).
	hp := (*C.uintptr_t)(C.malloc(C.size_t(unsafe.Sizeof(C.uintptr_t(0)))))
	if hp == nil {
		return newError(StatusNoMem, "vmenc_apply_options", "")
	}
	defer C.free(unsafe.Pointer(hp))
	*hp = C.uintptr_t(h)
	var o C.vmenc_apply_options
	o.struct_size = C.uint32_t(unsafe.Sizeof(o))
	o.segment_bytes = C.uint64_t(segmentBytes)
	o.progress = goProgressFn()
	o.progress_ctx = unsafe.Pointer(hp)
	err := f(&o)
	if err != nil && ctx.Err() != nil {
		var e *Error
		if errors.As(err, &e) && e.Status == StatusInterrupted {
			return ctx.Err()
		}
	}
	return err
}
