package vmenc

/*
#include <stdlib.h>
#include <vmenc/vmenc.h>
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Workspace is one directory holding a host's keystore, policy, audit log
// and datastore (docs/workspace.md).
type Workspace struct{ h handle }

func wsError(s C.vmenc_status, e *C.vmenc_workspace_error, op string) error {
	if s == 0 {
		return nil
	}
	detail := C.GoString(&e.message[0])
	if f := C.GoString(&e.file[0]); f != "" {
		if e.line != 0 {
			f = fmt.Sprintf("%s:%d", f, int(e.line))
		}
		detail = f + ": " + detail
	}
	return &Error{Status: Status(s), Op: op, Detail: detail}
}

// WorkspaceCreateOptions describe a new workspace.
type WorkspaceCreateOptions struct {
	Passphrase               []byte // the embedded keystore's; Wipe yours afterwards
	Admin                    string
	HostID, KeyProvider      string
	Folder                   string
	KDFOps, KDFMemKiB        uint32
	NoDefaultStoragePolicies bool
}

// CreateWorkspace makes a new workspace in dir.
func CreateWorkspace(dir string, o WorkspaceCreateOptions) error {
	if initErr != nil {
		return initErr
	}
	var cs cstrings
	defer cs.free()
	var c C.vmenc_workspace_create_options
	c.struct_size = C.uint32_t(unsafe.Sizeof(c))
	pp, pn := cs.secret(o.Passphrase)
	c.passphrase, c.passphrase_len = (*C.uint8_t)(pp), pn
	c.admin = cs.str(o.Admin, false)
	c.host_id = cs.str(o.HostID, true)
	c.key_provider = cs.str(o.KeyProvider, true)
	c.folder = cs.str(o.Folder, true)
	c.kdf_opslimit = C.uint32_t(o.KDFOps)
	c.kdf_memlimit_kib = C.uint32_t(o.KDFMemKiB)
	if !o.NoDefaultStoragePolicies {
		c.flags = C.VMENC_WORKSPACE_CREATE_DEFAULT_POLICY
	}
	var e C.vmenc_workspace_error
	e.struct_size = C.uint32_t(unsafe.Sizeof(e))
	return wsError(C.vmenc_workspace_create(cs.str(dir, false), &c, &e), &e, "vmenc_workspace_create")
}

// OpenWorkspace loads the workspace in dir (passphrase may be nil).
func OpenWorkspace(dir string, passphrase []byte, noSync bool) (*Workspace, error) {
	if initErr != nil {
		return nil, initErr
	}
	var cs cstrings
	defer cs.free()
	var c C.vmenc_workspace_open_options
	c.struct_size = C.uint32_t(unsafe.Sizeof(c))
	pp, pn := cs.secret(passphrase)
	c.passphrase, c.passphrase_len = (*C.uint8_t)(pp), pn
	if noSync {
		c.flags = C.VMENC_WORKSPACE_OPEN_NO_SYNC
	}
	var e C.vmenc_workspace_error
	e.struct_size = C.uint32_t(unsafe.Sizeof(e))
	var out *C.vmenc_workspace
	if err := wsError(C.vmenc_workspace_open(cs.str(dir, false), &c, &e, &out), &e, "vmenc_workspace_open"); err != nil {
		return nil, err
	}
	w := &Workspace{}
	w.h.init(unsafe.Pointer(out), freeNoErr(func(p unsafe.Pointer) { C.vmenc_workspace_free((*C.vmenc_workspace)(p)) }))
	setFinalizer(w, (*Workspace).Close)
	return w, nil
}

// Close frees the workspace once no view or VM opened through it is left.
func (w *Workspace) Close() error { return w.h.close() }

// Host returns a view of the workspace's host (Close it when done; it
// keeps the workspace alive meanwhile).
func (w *Workspace) Host() (*Host, error) {
	if err := w.h.retain(); err != nil {
		return nil, err
	}
	h := &Host{}
	h.h.init(unsafe.Pointer(C.vmenc_workspace_host((*C.vmenc_workspace)(w.h.p))), nil)
	h.h.parents = []*handle{&w.h}
	setFinalizer(h, (*Host).Close)
	return h, nil
}

// Policy returns a view of the workspace's policy (Close it when done).
func (w *Workspace) Policy() (*Policy, error) {
	if err := w.h.retain(); err != nil {
		return nil, err
	}
	p := newPolicy(C.vmenc_workspace_policy((*C.vmenc_workspace)(w.h.p)), false)
	p.h.parents = []*handle{&w.h}
	return p, nil
}

// Folder returns the inventory folder new VMs go to.
func (w *Workspace) Folder() string {
	p, err := w.h.use()
	if err != nil {
		return ""
	}
	defer w.h.done()
	return goStr(C.vmenc_workspace_folder((*C.vmenc_workspace)(p)))
}

// DatastoreDir returns the datastore directory.
func (w *Workspace) DatastoreDir() string {
	p, err := w.h.use()
	if err != nil {
		return ""
	}
	defer w.h.done()
	return goStr(C.vmenc_workspace_datastore_dir((*C.vmenc_workspace)(p)))
}

// SavePolicy does nothing and is kept for compatibility: every change to the
// policy (a VM created, a grant, a disk added...) is written to the
// workspace's sealed policy document by the call that makes it.
func (w *Workspace) SavePolicy() error {
	p, err := w.h.use()
	if err != nil {
		return err
	}
	defer w.h.done()
	return check(C.vmenc_workspace_save_policy((*C.vmenc_workspace)(p)), "vmenc_workspace_save_policy")
}

// EditPolicy applies one policy edit on behalf of actor through the library
// (the edit rule of Policy.EditAs) and audits the outcome: applied, denied
// with the missing privilege, or failed.
func (w *Workspace) EditPolicy(actor string, ed Edit) (Decision, error) {
	p, err := w.h.use()
	if err != nil {
		return Decision{}, err
	}
	defer w.h.done()
	ce, err := newCEdit(ed)
	if err != nil {
		return Decision{}, err
	}
	defer ce.free()
	var d C.vmenc_policy_decision
	d.struct_size = C.uint32_t(unsafe.Sizeof(d))
	s := C.vmenc_workspace_policy_edit((*C.vmenc_workspace)(p), ce.cs.str(actor, false), &ce.e, &d)
	return editResult(s, &d, "vmenc_workspace_policy_edit")
}

// PolicyShow returns the policy document if principal holds System.Read on
// the root (audited; an *Error with ErrDenied otherwise).
func (w *Workspace) PolicyShow(principal string) ([]byte, error) {
	p, err := w.h.use()
	if err != nil {
		return nil, err
	}
	defer w.h.done()
	var cs cstrings
	defer cs.free()
	var d C.vmenc_policy_decision
	d.struct_size = C.uint32_t(unsafe.Sizeof(d))
	var out *C.uint8_t
	var n C.size_t
	s := C.vmenc_workspace_policy_show((*C.vmenc_workspace)(p), cs.str(principal, false), &out, &n, &d)
	if _, err := editResult(s, &d, "vmenc_workspace_policy_show"); err != nil {
		return nil, err
	}
	defer C.vmenc_policy_buffer_free(out)
	return C.GoBytes(unsafe.Pointer(out), C.int(n)), nil
}

// AuthorizeAuditRead returns nil if principal may read the audit log
// (System.Read on the root); the read or its denial is audited as operation
// ("audit.show", "audit.tail", "audit.verify").
func (w *Workspace) AuthorizeAuditRead(principal, operation string) error {
	p, err := w.h.use()
	if err != nil {
		return err
	}
	defer w.h.done()
	var cs cstrings
	defer cs.free()
	var d C.vmenc_policy_decision
	d.struct_size = C.uint32_t(unsafe.Sizeof(d))
	s := C.vmenc_workspace_audit_read((*C.vmenc_workspace)(p), cs.str(principal, false), cs.str(operation, false), &d)
	_, err = editResult(s, &d, "vmenc_workspace_audit_read")
	return err
}
