package vmenc

// VM state files (NVRAM, suspend and snapshot state, swap), clone and
// configuration entries. A state file opened without FileExport is the
// hypervisor's own path (policy POWER_ON); with FileExport it is
// out-of-band access - a download when read-only (EXPORT_VM), an upload
// and a download when writable (UPLOAD_FILES and EXPORT_VM) - and on an
// encrypted VM each needs Cryptographer.Access (include/vmenc/vm.h).

/*
#include <stdlib.h>
#include <vmenc/vmenc.h>
*/
import "C"

import (
	"errors"
	"io"
	"unsafe"
)

// FileClass is a kind of VM state file.
type FileClass int

// State file classes.
const (
	FileNVRAM FileClass = C.VMENC_VM_FILE_NVRAM // NAME.nvram
	FileVMSS  FileClass = C.VMENC_VM_FILE_VMSS  // NAME.vmss (suspend state)
	FileVMSN  FileClass = C.VMENC_VM_FILE_VMSN  // NAME-SnapshotN.vmsn, N = index
	FileVMEM  FileClass = C.VMENC_VM_FILE_VMEM  // NAME-SnapshotN.vmem, N = index
	FileVSWP  FileClass = C.VMENC_VM_FILE_VSWP  // NAME.vswp (fixed size: the VM's memory)
)

// FileOpenFlags select how a state file is opened.
type FileOpenFlags uint32

// State file open flags.
const (
	FileCreate   FileOpenFlags = C.VMENC_VM_FILE_CREATE
	FileTruncate FileOpenFlags = C.VMENC_VM_FILE_TRUNCATE
	FileReadOnly FileOpenFlags = C.VMENC_VM_FILE_READONLY
	// FileExport marks out-of-band access (a tool copying the file out or
	// in, not the hypervisor running the VM): EXPORT_VM with FileReadOnly,
	// else UPLOAD_FILES and EXPORT_VM; Cryptographer.Access on an
	// encrypted VM. Audited as "vm.file_export" / "vm.file_upload".
	FileExport FileOpenFlags = C.VMENC_VM_FILE_EXPORT
)

// OpenFile opens state file class (index: the snapshot number for
// FileVMSN/FileVMEM, else 0). A refusal matches ErrDenied.
func (v *VM) OpenFile(principal string, class FileClass, index uint32, flags FileOpenFlags) (*VMFile, error) {
	if err := v.h.retain(); err != nil {
		return nil, err
	}
	var cs cstrings
	defer cs.free()
	var out *C.vmenc_vm_file
	if err := check(C.vmenc_vm_file_open((*C.vmenc_vm)(v.h.p), cs.str(principal, false), C.vmenc_vm_file_class(class),
		C.uint32_t(index), C.uint32_t(flags), &out), "vmenc_vm_file_open"); err != nil {
		v.h.release()
		return nil, err
	}
	f := &VMFile{}
	f.h.init(unsafe.Pointer(out), func(p unsafe.Pointer) error {
		return check(C.vmenc_vm_file_close((*C.vmenc_vm_file)(p)), "vmenc_vm_file_close")
	})
	f.h.parents = []*handle{&v.h}
	setFinalizer(f, (*VMFile).Close)
	return f, nil
}

// VMFile is one open state file; its calls are serialised in C. It
// implements io.ReaderAt and io.WriterAt.
type VMFile struct{ h handle }

var _ io.ReaderAt = (*VMFile)(nil)
var _ io.WriterAt = (*VMFile)(nil)

// Close flushes (unless read-only) and releases the file; it reports the flush's error.
func (f *VMFile) Close() error { return f.h.close() }

// Size returns the plaintext size in bytes.
func (f *VMFile) Size() (int64, error) {
	p, err := f.h.use()
	if err != nil {
		return 0, err
	}
	defer f.h.done()
	var n C.uint64_t
	err = check(C.vmenc_vm_file_get_size((*C.vmenc_vm_file)(p), &n), "vmenc_vm_file_get_size")
	return int64(n), err
}

// ReadAt reads at off, every chunk authenticated first (io.ReaderAt: io.EOF
// when fewer than len(b) bytes remain).
func (f *VMFile) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("vmenc: negative offset")
	}
	if len(b) == 0 {
		return 0, nil
	}
	p, err := f.h.use()
	if err != nil {
		return 0, err
	}
	defer f.h.done()
	var n C.size_t
	if err := check(C.vmenc_vm_file_pread((*C.vmenc_vm_file)(p), C.uint64_t(off), C.size_t(len(b)), bytesPtr(b), &n), "vmenc_vm_file_pread"); err != nil {
		return 0, err
	}
	if int(n) < len(b) {
		return int(n), io.EOF
	}
	return int(n), nil
}

// WriteAt writes b at off, extending the file (FileVSWP: within its size).
func (f *VMFile) WriteAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("vmenc: negative offset")
	}
	if len(b) == 0 {
		return 0, nil
	}
	p, err := f.h.use()
	if err != nil {
		return 0, err
	}
	defer f.h.done()
	if err := check(C.vmenc_vm_file_pwrite((*C.vmenc_vm_file)(p), C.uint64_t(off), bytesPtr(b), C.size_t(len(b))), "vmenc_vm_file_pwrite"); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Flush makes completed writes durable.
func (f *VMFile) Flush() error {
	p, err := f.h.use()
	if err != nil {
		return err
	}
	defer f.h.done()
	return check(C.vmenc_vm_file_flush((*C.vmenc_vm_file)(p)), "vmenc_vm_file_flush")
}

// VMCloneOptions describe a clone (KeepKeys: share the source's keys).
type VMCloneOptions struct {
	Principal, HomeDir, Name, Folder string
	Pool, Datastore, StoragePolicy   string
	KeepKeys                         bool
}

// Clone copies the powered-off VM (policy CLONE_VM) to a new one and returns it open.
func (v *VM) Clone(o VMCloneOptions) (*VM, error) {
	vp, err := v.h.use()
	if err != nil {
		return nil, err
	}
	defer v.h.done()
	if err := v.host.share(); err != nil {
		return nil, err
	}
	var cs cstrings
	defer cs.free()
	var c C.vmenc_vm_clone_options
	c.struct_size = C.uint32_t(unsafe.Sizeof(c))
	c.principal = cs.str(o.Principal, false)
	c.home_dir = cs.str(o.HomeDir, false)
	c.name = cs.str(o.Name, false)
	c.folder = cs.str(o.Folder, false)
	c.pool = cs.str(o.Pool, true)
	c.datastore = cs.str(o.Datastore, true)
	c.storage_policy = cs.str(o.StoragePolicy, true)
	if o.KeepKeys {
		c.flags = C.VMENC_VM_CLONE_KEEP_KEYS
	}
	var out *C.vmenc_vm
	if err := check(C.vmenc_vm_clone((*C.vmenc_vm)(vp), &c, &out), "vmenc_vm_clone"); err != nil {
		v.host.release()
		return nil, err
	}
	return newVM(out, v.host), nil
}

// ConfigSet sets configuration entry key (secret: sealed in encryption.data
// of an encrypted VM); value "" removes it. Policy EDIT_SETTINGS.
func (v *VM) ConfigSet(principal, key, value string, secret bool) error {
	return v.do("vmenc_vm_config_set", func(p *C.vmenc_vm, cs *cstrings) C.vmenc_status {
		var fl C.uint32_t
		if secret {
			fl = C.VMENC_VM_CONFIG_SECRET
		}
		return C.vmenc_vm_config_set(p, cs.str(principal, false), cs.str(key, false), cs.str(value, true), fl)
	})
}

// ConfigGet returns configuration entry key; a secret one needs the
// console privilege (CONSOLE: Cryptographer.Access).
func (v *VM) ConfigGet(principal, key string) (string, error) {
	buf := make([]C.char, 4097)
	err := v.do("vmenc_vm_config_get", func(p *C.vmenc_vm, cs *cstrings) C.vmenc_status {
		return C.vmenc_vm_config_get(p, cs.str(principal, false), cs.str(key, false), &buf[0], C.size_t(len(buf)), nil)
	})
	if err != nil {
		return "", err
	}
	return C.GoString(&buf[0]), nil
}
