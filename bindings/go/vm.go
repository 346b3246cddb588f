package vmenc

/*
#include <stdlib.h>
#include <vmenc/vmenc.h>

extern int goVmencProgress(void *ctx, char *disk_id, vmenc_convert_progress *p);
int vmenc_go_progress(void *ctx, const char *disk_id, const vmenc_convert_progress *p) {
	return goVmencProgress(ctx, (char *)disk_id, (vmenc_convert_progress *)p);
}
*/
import "C"

import (
	"context"
	"errors"
	"io"
	"time"
	"unsafe"
)

// HostOptions configure a Host.
type HostOptions struct {
	HostID     string
	KeyManager *KeyManager
	Policy     *Policy
	Audit      *Audit // needs at least one sink
	KMSTimeout time.Duration
	NoSync     bool // skip fsync (tests and benchmarks only)
}

// Host is one hypervisor host. Safe for concurrent use. It keeps its key
// manager, policy and audit dispatcher alive until it is closed.
type Host struct{ h handle }

func retainAll(hs ...*handle) error {
	for i, h := range hs {
		if err := h.retain(); err != nil {
			for _, r := range hs[:i] {
				r.release()
			}
			return err
		}
	}
	return nil
}

// NewHost makes a host.
func NewHost(o HostOptions) (*Host, error) {
	if initErr != nil {
		return nil, initErr
	}
	if o.KeyManager == nil || o.Policy == nil || o.Audit == nil {
		return nil, &Error{Status: StatusInvalidArg, Op: "vmenc_host_new", Detail: "KeyManager, Policy and Audit are required"}
	}
	parents := []*handle{&o.KeyManager.h, &o.Policy.h, &o.Audit.h}
	if err := retainAll(parents...); err != nil {
		return nil, err
	}
	var cs cstrings
	defer cs.free()
	var c C.vmenc_host_options
	c.struct_size = C.uint32_t(unsafe.Sizeof(c))
	c.host_id = cs.str(o.HostID, false)
	// Retained (refs > 0) handles are never freed, so their pointers are stable.
	c.keymgr = (*C.vmenc_keymgr)(o.KeyManager.h.p)
	c.policy = (*C.vmenc_policy)(o.Policy.h.p)
	c.audit = (*C.vmenc_audit)(o.Audit.h.p)
	c.kms_timeout_ms = C.uint32_t(o.KMSTimeout.Milliseconds())
	if o.NoSync {
		c.flags = C.VMENC_HOST_NO_SYNC
	}
	var out *C.vmenc_host
	if err := check(C.vmenc_host_new(&c, &out), "vmenc_host_new"); err != nil {
		for _, p := range parents {
			p.release()
		}
		return nil, err
	}
	h := &Host{}
	h.h.init(unsafe.Pointer(out), freeNoErr(func(p unsafe.Pointer) { C.vmenc_host_free((*C.vmenc_host)(p)) }))
	h.h.parents = parents
	setFinalizer(h, (*Host).Close)
	return h, nil
}

// Close frees the host (once no VM opened through it is left).
func (h *Host) Close() error { return h.h.close() }

// VMCreateOptions describe a new VM.
type VMCreateOptions struct {
	Principal, HomeDir, Name, Folder string
	Pool, Datastore, StoragePolicy   string
	KEKID                            string
	MemoryBytes                      uint64
}

func newVM(p *C.vmenc_vm, host *handle) *VM {
	v := &VM{}
	v.h.init(unsafe.Pointer(p), freeNoErr(func(p unsafe.Pointer) { C.vmenc_vm_free((*C.vmenc_vm)(p)) }))
	v.h.parents = []*handle{host}
	v.host = host
	setFinalizer(v, (*VM).Close)
	return v
}

// CreateVM makes a new VM (encrypted from birth if StoragePolicy encrypts).
func (h *Host) CreateVM(o VMCreateOptions) (*VM, error) {
	if err := h.h.retain(); err != nil {
		return nil, err
	}
	var cs cstrings
	defer cs.free()
	var c C.vmenc_vm_create_options
	c.struct_size = C.uint32_t(unsafe.Sizeof(c))
	c.principal = cs.str(o.Principal, false)
	c.home_dir = cs.str(o.HomeDir, false)
	c.name = cs.str(o.Name, false)
	c.folder = cs.str(o.Folder, false)
	c.pool = cs.str(o.Pool, true)
	c.datastore = cs.str(o.Datastore, true)
	c.storage_policy = cs.str(o.StoragePolicy, true)
	c.kek_id = cs.str(o.KEKID, true)
	c.memory_bytes = C.uint64_t(o.MemoryBytes)
	var out *C.vmenc_vm
	if err := check(C.vmenc_vm_create((*C.vmenc_host)(h.h.p), &c, &out), "vmenc_vm_create"); err != nil {
		h.h.release()
		return nil, err
	}
	return newVM(out, &h.h), nil
}

// OpenVM opens the VM whose configuration is vmxPath. A VM whose KEK cannot
// be fetched is locked: it is returned together with an error matching
// ErrVMLocked (close it), so the caller can inspect it or Unlock it later.
func (h *Host) OpenVM(principal, vmxPath string) (*VM, error) {
	if err := h.h.retain(); err != nil {
		return nil, err
	}
	var cs cstrings
	defer cs.free()
	var out *C.vmenc_vm
	s := C.vmenc_vm_open((*C.vmenc_host)(h.h.p), cs.str(principal, false), cs.str(vmxPath, false), &out)
	if s != 0 && out == nil {
		h.h.release()
		return nil, check(s, "vmenc_vm_open")
	}
	return newVM(out, &h.h), check(s, "vmenc_vm_open")
}

// RegisterVM adds an existing VM home (vmxPath) to this host's inventory
// under folder (pool optional; OpRegisterVM) and opens it like OpenVM: a
// VM whose KEK cannot be fetched is returned locked with ErrVMLocked.
func (h *Host) RegisterVM(principal, vmxPath, folder, pool string) (*VM, error) {
	if err := h.h.retain(); err != nil {
		return nil, err
	}
	var cs cstrings
	defer cs.free()
	var out *C.vmenc_vm
	s := C.vmenc_vm_register((*C.vmenc_host)(h.h.p), cs.str(principal, false), cs.str(vmxPath, false),
		cs.str(folder, false), cs.str(pool, true), &out)
	if s != 0 && out == nil {
		h.h.release()
		return nil, check(s, "vmenc_vm_register")
	}
	return newVM(out, &h.h), check(s, "vmenc_vm_register")
}

// VM is one VM; safe for concurrent use.
type VM struct {
	h    handle
	host *handle
}

// Close releases the VM (disks and state files still open keep it alive).
func (v *VM) Close() error { return v.h.close() }

// VMInfo describes a VM.
type VMInfo struct {
	Name, UUID            string
	Encrypted, Locked     bool
	KeyProvider, KEKID    string
	NumDisks, MissingKeys int
	StoragePolicy         string
}

// Info returns the VM's status.
func (v *VM) Info() (VMInfo, error) {
	p, err := v.h.use()
	if err != nil {
		return VMInfo{}, err
	}
	defer v.h.done()
	var i C.vmenc_vm_info
	i.struct_size = C.uint32_t(unsafe.Sizeof(i))
	if err := check(C.vmenc_vm_get_info((*C.vmenc_vm)(p), &i), "vmenc_vm_get_info"); err != nil {
		return VMInfo{}, err
	}
	return VMInfo{C.GoString(&i.name[0]), C.GoString(&i.uuid[0]), i.encrypted != 0, i.locked != 0,
		C.GoString(&i.key_provider[0]), C.GoString(&i.kek_id[0]), int(i.num_disks), int(i.num_missing_keys),
		C.GoString(&i.storage_policy[0])}, nil
}

// DiskState is a disk's encryption state.
type DiskState int

// Disk states.
const (
	DiskPlain DiskState = iota
	DiskEncrypted
	DiskEncrypting
	DiskDecrypting
	DiskRekeying
)

// DiskInfo describes one disk of a VM.
type DiskInfo struct {
	DiskID, FileName   string
	Capacity           uint64
	SectorSize         uint32
	State              DiskState
	KeyProvider, KEKID string
	Locked             bool
}

// Disks lists the VM's disks in configuration order.
func (v *VM) Disks() ([]DiskInfo, error) {
	info, err := v.Info()
	if err != nil {
		return nil, err
	}
	p, err := v.h.use()
	if err != nil {
		return nil, err
	}
	defer v.h.done()
	out := make([]DiskInfo, 0, info.NumDisks)
	for i := 0; i < info.NumDisks; i++ {
		var d C.vmenc_disk_info
		d.struct_size = C.uint32_t(unsafe.Sizeof(d))
		if err := check(C.vmenc_vm_get_disk_info((*C.vmenc_vm)(p), C.uint32_t(i), &d), "vmenc_vm_get_disk_info"); err != nil {
			return nil, err
		}
		out = append(out, DiskInfo{C.GoString(&d.disk_id[0]), C.GoString(&d.file_name[0]), uint64(d.capacity),
			uint32(d.sector_size), DiskState(d.state), C.GoString(&d.key_provider[0]), C.GoString(&d.kek_id[0]), d.locked != 0})
	}
	return out, nil
}

// Unlock retries fetching the keys of a locked VM.
func (v *VM) Unlock(principal string) error {
	return v.do("vmenc_vm_unlock", func(p *C.vmenc_vm, cs *cstrings) C.vmenc_status {
		return C.vmenc_vm_unlock(p, cs.str(principal, false))
	})
}

func (v *VM) do(op string, f func(*C.vmenc_vm, *cstrings) C.vmenc_status) error {
	p, err := v.h.use()
	if err != nil {
		return err
	}
	defer v.h.done()
	var cs cstrings
	defer cs.free()
	return check(f((*C.vmenc_vm)(p), &cs), op)
}

// AddDisk adds a zero-filled disk of capacity bytes and returns its ID.
func (v *VM) AddDisk(principal string, capacity uint64, sectorSize uint32) (string, error) {
	var id [C.VMENC_DISK_ID_MAX + 1]C.char
	err := v.do("vmenc_vm_add_disk", func(p *C.vmenc_vm, cs *cstrings) C.vmenc_status {
		var o C.vmenc_disk_create_options
		o.struct_size = C.uint32_t(unsafe.Sizeof(o))
		o.capacity = C.uint64_t(capacity)
		o.sector_size = C.uint32_t(sectorSize)
		return C.vmenc_vm_add_disk(p, cs.str(principal, false), &o, &id[0], C.size_t(len(id)))
	})
	if err != nil {
		return "", err
	}
	return C.GoString(&id[0]), nil
}

// goProgressFn is the C trampoline to goVmencProgress (progress.go), which
// must live in this file: a file with //export may not define C functions.
func goProgressFn() C.vmenc_progress_fn { return C.vmenc_progress_fn(C.vmenc_go_progress) }

// RekeyShallow re-wraps every key under a new KEK (keyProvider/kekID "" =
// keep/create). A keyProvider other than the one the VM's storage policy
// names leaves that policy (the VM's StoragePolicy becomes ""). ctx is
// checked before the call (the rewrap itself is short and not cut midway).
func (v *VM) RekeyShallow(ctx context.Context, principal, keyProvider, kekID string) error {
	if ctx != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return v.do("vmenc_vm_rekey_shallow", func(p *C.vmenc_vm, cs *cstrings) C.vmenc_status {
		return C.vmenc_vm_rekey_shallow(p, cs.str(principal, false), cs.str(keyProvider, true), cs.str(kekID, true))
	})
}

// ApplyStoragePolicy brings the VM to storage policy name (encrypt, decrypt,
// change of key provider), converting disks that hold data in place
// (segmentBytes 0 = default). When ctx is done the conversion stops after
// the segment in flight, cleanly and resumably, and ctx.Err() is returned.
func (v *VM) ApplyStoragePolicy(ctx context.Context, principal, name string, segmentBytes uint64) error {
	return withProgress(ctx, segmentBytes, func(o *C.vmenc_apply_options) error {
		return v.do("vmenc_vm_apply_storage_policy_ex", func(p *C.vmenc_vm, cs *cstrings) C.vmenc_status {
			return C.vmenc_vm_apply_storage_policy_ex(p, cs.str(principal, false), cs.str(name, false), o)
		})
	})
}

// RekeyDeep gives every encrypted disk a new DEK, re-encrypting in place;
// ctx as ApplyStoragePolicy.
func (v *VM) RekeyDeep(ctx context.Context, principal string, segmentBytes uint64) error {
	return withProgress(ctx, segmentBytes, func(o *C.vmenc_apply_options) error {
		return v.do("vmenc_vm_rekey_deep", func(p *C.vmenc_vm, cs *cstrings) C.vmenc_status {
			return C.vmenc_vm_rekey_deep(p, cs.str(principal, false), o)
		})
	})
}

// Resume finishes an interrupted conversion or storage-policy application;
// ctx as ApplyStoragePolicy.
func (v *VM) Resume(ctx context.Context, principal string, segmentBytes uint64) error {
	return withProgress(ctx, segmentBytes, func(o *C.vmenc_apply_options) error {
		return v.do("vmenc_vm_resume", func(p *C.vmenc_vm, cs *cstrings) C.vmenc_status {
			return C.vmenc_vm_resume(p, cs.str(principal, false), o)
		})
	})
}

// DiskOpenFlags select read-only and export access.
type DiskOpenFlags uint32

// Disk open flags.
const (
	DiskReadOnly DiskOpenFlags = C.VMENC_DISK_OPEN_READONLY
	DiskExport   DiskOpenFlags = C.VMENC_DISK_OPEN_EXPORT
)

// OpenDisk opens disk diskID for I/O.
func (v *VM) OpenDisk(principal, diskID string, flags DiskOpenFlags) (*Disk, error) {
	if err := v.h.retain(); err != nil {
		return nil, err
	}
	var cs cstrings
	defer cs.free()
	var out *C.vmenc_disk
	if err := check(C.vmenc_disk_open((*C.vmenc_vm)(v.h.p), cs.str(principal, false), cs.str(diskID, false), C.uint32_t(flags), &out), "vmenc_disk_open"); err != nil {
		v.h.release()
		return nil, err
	}
	d := &Disk{}
	d.h.init(unsafe.Pointer(out), func(p unsafe.Pointer) error {
		return check(C.vmenc_disk_close((*C.vmenc_disk)(p)), "vmenc_disk_close")
	})
	d.h.parents = []*handle{&v.h}
	setFinalizer(d, (*Disk).Close)
	return d, nil
}

// Disk is one open virtual disk. It implements io.ReaderAt and io.WriterAt;
// any number of goroutines may read and write at once.
type Disk struct{ h handle }

var _ io.ReaderAt = (*Disk)(nil)
var _ io.WriterAt = (*Disk)(nil)

// Close flushes (unless read-only) and releases the disk; it reports the flush's error.
func (d *Disk) Close() error { return d.h.close() }

// Size returns the capacity in bytes.
func (d *Disk) Size() (int64, error) {
	p, err := d.h.use()
	if err != nil {
		return 0, err
	}
	defer d.h.done()
	var n C.uint64_t
	err = check(C.vmenc_disk_get_size((*C.vmenc_disk)(p), &n), "vmenc_disk_get_size")
	return int64(n), err
}

// Encrypted reports whether the disk is encrypted.
func (d *Disk) Encrypted() (bool, error) {
	p, err := d.h.use()
	if err != nil {
		return false, err
	}
	defer d.h.done()
	var n C.int
	err = check(C.vmenc_disk_is_encrypted((*C.vmenc_disk)(p), &n), "vmenc_disk_is_encrypted")
	return n != 0, err
}

// ReadAt reads decrypted bytes at off (io.ReaderAt: io.EOF past the end).
func (d *Disk) ReadAt(b []byte, off int64) (int, error) {
	size, err := d.Size()
	if err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, errors.New("vmenc: negative offset")
	}
	if off >= size {
		return 0, io.EOF
	}
	n := len(b)
	var eof error
	if int64(n) > size-off {
		n, eof = int(size-off), io.EOF
	}
	if n == 0 {
		return 0, eof
	}
	p, err := d.h.use()
	if err != nil {
		return 0, err
	}
	defer d.h.done()
	if err := check(C.vmenc_disk_pread((*C.vmenc_disk)(p), C.uint64_t(off), C.size_t(n), bytesPtr(b)), "vmenc_disk_pread"); err != nil {
		return 0, err
	}
	return n, eof
}

// WriteAt writes b at off, encrypted (io.WriterAt; the range must lie within the capacity).
func (d *Disk) WriteAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("vmenc: negative offset")
	}
	if len(b) == 0 {
		return 0, nil
	}
	p, err := d.h.use()
	if err != nil {
		return 0, err
	}
	defer d.h.done()
	if err := check(C.vmenc_disk_pwrite((*C.vmenc_disk)(p), C.uint64_t(off), bytesPtr(b), C.size_t(len(b))), "vmenc_disk_pwrite"); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Flush makes completed writes durable.
func (d *Disk) Flush() error {
	p, err := d.h.use()
	if err != nil {
		return err
	}
	defer d.h.done()
	return check(C.vmenc_disk_flush((*C.vmenc_disk)(p)), "vmenc_disk_flush")
}

// ConvertKind selects an in-place conversion.
type ConvertKind int

// Conversion kinds.
const (
	ConvertEncrypt ConvertKind = 1
	ConvertDecrypt ConvertKind = 2
	ConvertRekey   ConvertKind = 3
)

// Progress of an in-place conversion.
type Progress struct {
	State                       DiskState
	BytesDone, BytesTotal       uint64
	SegmentsDone, SegmentsTotal uint64
	BytesPerSecond              uint64
	Done                        bool
}

// ConvertBegin starts an in-place conversion of the open disk.
func (d *Disk) ConvertBegin(principal string, kind ConvertKind, segmentBytes uint64) error {
	p, err := d.h.use()
	if err != nil {
		return err
	}
	defer d.h.done()
	var cs cstrings
	defer cs.free()
	var o C.vmenc_convert_options
	o.struct_size = C.uint32_t(unsafe.Sizeof(o))
	o.segment_bytes = C.uint64_t(segmentBytes)
	return check(C.vmenc_disk_convert_begin((*C.vmenc_disk)(p), cs.str(principal, false), C.vmenc_convert_kind(kind), &o), "vmenc_disk_convert_begin")
}

// ConvertStep moves segments until about maxBytes have moved or the conversion is complete.
func (d *Disk) ConvertStep(maxBytes uint64) (Progress, error) {
	p, err := d.h.use()
	if err != nil {
		return Progress{}, err
	}
	defer d.h.done()
	var pr C.vmenc_convert_progress
	pr.struct_size = C.uint32_t(unsafe.Sizeof(pr))
	if err := check(C.vmenc_disk_convert_step((*C.vmenc_disk)(p), C.uint64_t(maxBytes), &pr), "vmenc_disk_convert_step"); err != nil {
		return Progress{}, err
	}
	return Progress{DiskState(pr.state), uint64(pr.bytes_done), uint64(pr.bytes_total), uint64(pr.segments_done),
		uint64(pr.segments_total), uint64(pr.bytes_per_second), pr.done != 0}, nil
}

// Convert runs an in-place conversion of this open disk to its end
// (ConvertBegin, then ConvertStep per segment). When ctx is done it stops
// between segments - the conversion stays resumable - and returns
// ctx.Err() with the progress so far.
func (d *Disk) Convert(ctx context.Context, principal string, kind ConvertKind, segmentBytes uint64) (Progress, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		return Progress{}, err
	}
	if err := d.ConvertBegin(principal, kind, segmentBytes); err != nil {
		return Progress{}, err
	}
	for {
		p, err := d.ConvertStep(0)
		if err != nil || p.Done {
			return p, err
		}
		if err := ctx.Err(); err != nil {
			return p, err
		}
	}
}
