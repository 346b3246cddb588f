package vmenc

/*
#include <stdlib.h>
#include <vmenc/vmenc.h>
*/
import "C"

import (
	"context"
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

// openOptions builds the open options; the passphrase copy lives as long as cs.
func openOptions(cs *cstrings, passphrase []byte, noSync bool) C.vmenc_workspace_open_options {
	var c C.vmenc_workspace_open_options
	c.struct_size = C.uint32_t(unsafe.Sizeof(c))
	pp, pn := cs.secret(passphrase)
	c.passphrase, c.passphrase_len = (*C.uint8_t)(pp), pn
	if noSync {
		c.flags = C.VMENC_WORKSPACE_OPEN_NO_SYNC
	}
	return c
}

// OpenWorkspace loads the workspace in dir (passphrase may be nil).
func OpenWorkspace(dir string, passphrase []byte, noSync bool) (*Workspace, error) {
	if initErr != nil {
		return nil, initErr
	}
	var cs cstrings
	defer cs.free()
	c := openOptions(&cs, passphrase, noSync)
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

// OpenVM opens VM name of the datastore for principal (a locked VM comes
// back with an error matching ErrVMLocked, as Host.OpenVM).
func (w *Workspace) OpenVM(principal, name string) (*VM, error) {
	h, err := w.Host()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	if err := h.h.retain(); err != nil {
		return nil, err
	}
	p, err := w.h.use()
	if err != nil {
		h.h.release()
		return nil, err
	}
	defer w.h.done()
	var cs cstrings
	defer cs.free()
	var out *C.vmenc_vm
	s := C.vmenc_workspace_open_vm((*C.vmenc_workspace)(p), cs.str(principal, false), cs.str(name, false), &out)
	if s != 0 && out == nil {
		h.h.release()
		return nil, check(s, "vmenc_workspace_open_vm")
	}
	return newVM(out, &h.h), check(s, "vmenc_workspace_open_vm")
}

// ResealResult is what ResealPolicy did.
type ResealResult struct {
	OldSHA256, NewSHA256 string // policy.json as it was on disk, and as written
	Generation           uint64 // the new seal's generation
	WasSealed            bool   // the old file carried a seal line
	SealWasValid         bool   // ... which verified
}

// ResealPolicy re-seals the policy document of the workspace in dir as it
// is on disk: the recovery for a document edited outside the library, which
// OpenWorkspace refuses with ErrAuth. principal must hold the Admin role on
// the root of that document (ErrDenied otherwise; nothing is written).
// Audited as "policy.reseal" either way. Other failures as OpenWorkspace.
func ResealPolicy(dir string, passphrase []byte, principal string, noSync bool) (ResealResult, error) {
	if initErr != nil {
		return ResealResult{}, initErr
	}
	var cs cstrings
	defer cs.free()
	c := openOptions(&cs, passphrase, noSync)
	var e C.vmenc_workspace_error
	e.struct_size = C.uint32_t(unsafe.Sizeof(e))
	var r C.vmenc_workspace_reseal_result
	r.struct_size = C.uint32_t(unsafe.Sizeof(r))
	s := C.vmenc_workspace_reseal_policy(cs.str(dir, false), &c, cs.str(principal, false), &e, &r)
	if err := wsError(s, &e, "vmenc_workspace_reseal_policy"); err != nil {
		return ResealResult{}, err
	}
	return ResealResult{C.GoString(&r.old_sha256[0]), C.GoString(&r.new_sha256[0]), uint64(r.generation),
		r.was_sealed != 0, r.seal_was_valid != 0}, nil
}

// Authorize decides req for principal, for an operation the caller carries
// out itself through lower layers (a key created with the key manager:
// OpManageKeys). A denial is audited at once as operation on target and
// returned as an error matching ErrDenied; an allowed call must be
// followed by AuditResult.
func (w *Workspace) Authorize(principal string, req Request, operation, target string) (Decision, error) {
	p, err := w.h.use()
	if err != nil {
		return Decision{}, err
	}
	defer w.h.done()
	var cs cstrings
	defer cs.free()
	r := cRequest(&cs, req)
	var d C.vmenc_policy_decision
	d.struct_size = C.uint32_t(unsafe.Sizeof(d))
	s := C.vmenc_workspace_authorize((*C.vmenc_workspace)(p), cs.str(principal, false), &r, cs.str(operation, false),
		cs.str(target, true), &d)
	return editResult(s, &d, "vmenc_workspace_authorize")
}

// AuditResult records the outcome (status 0: success) of an operation
// allowed by Authorize; keyProvider, keyID and reason may be "".
func (w *Workspace) AuditResult(principal, operation, target, keyProvider, keyID string, status Status, reason string) error {
	p, err := w.h.use()
	if err != nil {
		return err
	}
	defer w.h.done()
	var cs cstrings
	defer cs.free()
	return check(C.vmenc_workspace_audit_result((*C.vmenc_workspace)(p), cs.str(principal, false), cs.str(operation, false),
		cs.str(target, true), cs.str(keyProvider, true), cs.str(keyID, true), C.vmenc_status(status), cs.str(reason, true)),
		"vmenc_workspace_audit_result")
}

// CreateKey creates a KEK in key provider alias on behalf of principal
// (OpManageKeys, as "vmenc kms create-key"): authorized, created, and
// audited as "kms.create_key". A refusal matches ErrDenied and creates nothing.
func (w *Workspace) CreateKey(ctx context.Context, principal, alias, name string) (string, error) {
	if _, err := w.Authorize(principal, Request{Op: OpManageKeys}, "kms.create_key", alias); err != nil {
		return "", err
	}
	ms, err := timeoutMs(ctx)
	if err != nil {
		return "", err
	}
	p, err := w.h.use()
	if err != nil {
		return "", err
	}
	var cs cstrings
	var buf [C.VMENC_KMS_KEY_ID_CAP]C.char
	s := C.vmenc_keymgr_create_kek(C.vmenc_workspace_keymgr((*C.vmenc_workspace)(p)), cs.str(alias, false), cs.str(name, true), ms,
		&buf[0], C.size_t(len(buf)))
	cs.free()
	w.h.done()
	id := ""
	if s == 0 {
		id = C.GoString(&buf[0])
	}
	aerr := w.AuditResult(principal, "kms.create_key", alias, alias, id, Status(s), "")
	if err := check(s, "vmenc_keymgr_create_kek"); err != nil {
		return "", err
	}
	return id, aerr
}

// KMSSpec describes a key provider to add (vmenc_workspace_kms_spec).
type KMSSpec struct {
	Alias, Type string   // type: "file", "kmip", "pkcs11"
	Endpoints   []string // file: keystore path; kmip: host:port; pkcs11: module path
	Options     []string // "key=value", given to every endpoint
	SecretFile  string   // passphrase / PIN file; "" = the workspace passphrase (file)
	Create      bool     // create a file keystore that does not exist yet
}

// AddKMS adds a key provider on behalf of principal (OpManageKeyServers;
// audited; ErrDenied when refused).
func (w *Workspace) AddKMS(principal string, spec KMSSpec) error {
	p, err := w.h.use()
	if err != nil {
		return err
	}
	defer w.h.done()
	var cs cstrings
	defer cs.free()
	var c C.vmenc_workspace_kms_spec
	c.struct_size = C.uint32_t(unsafe.Sizeof(c))
	c.alias = cs.str(spec.Alias, false)
	c._type = cs.str(spec.Type, false)
	c.endpoints = cs.array(spec.Endpoints)
	c.num_endpoints = C.size_t(len(spec.Endpoints))
	if len(spec.Options) > 0 {
		c.options = cs.array(spec.Options)
	}
	c.secret_file = cs.str(spec.SecretFile, true)
	if spec.Create {
		c.flags = C.VMENC_WORKSPACE_KMS_CREATE
	}
	return check(C.vmenc_workspace_add_kms((*C.vmenc_workspace)(p), cs.str(principal, false), &c), "vmenc_workspace_add_kms")
}

// DeleteOptions select what DeleteVM does besides removing the VM from the
// inventory and the control store.
type DeleteOptions struct {
	KeepFiles   bool // keep the VM home in the datastore
	DestroyKeys bool // crypto-shredding: destroy the VM's KEKs nothing else uses (Cryptographer.ManageKeys)
	DryRun      bool // plan only: fill the result, change nothing
}

// DeleteResult is what DeleteVM did (or, with DryRun, would do).
type DeleteResult struct {
	NumFiles, NumKeys, NumKeysDestroyed, NumKeysKept uint32
	NumBytes                                         uint64
	KeyProvider, KEKID                               string // the VM key's; "" for a plain VM
	Message                                          string // why a key was kept, or the step that failed
}

// DeleteVM deletes VM name on behalf of principal (VirtualMachine.Inventory.Delete;
// every step audited): its files unless KeepFiles, its authority record, its
// inventory entry; with DestroyKeys also every KEK of the VM that nothing
// else of the workspace uses, so no copy of its files - a backup included -
// can be decrypted afterwards. A VM open in another process is refused
// (ErrLocked, nothing removed). The result is filled on failure too.
func (w *Workspace) DeleteVM(ctx context.Context, principal, name string, opts DeleteOptions) (DeleteResult, error) {
	if ctx != nil && ctx.Err() != nil {
		return DeleteResult{}, ctx.Err()
	}
	p, err := w.h.use()
	if err != nil {
		return DeleteResult{}, err
	}
	defer w.h.done()
	var cs cstrings
	defer cs.free()
	var flags C.uint32_t
	if opts.KeepFiles {
		flags |= C.VMENC_WORKSPACE_DELETE_KEEP_FILES
	}
	if opts.DestroyKeys {
		flags |= C.VMENC_WORKSPACE_DELETE_DESTROY_KEYS
	}
	if opts.DryRun {
		flags |= C.VMENC_WORKSPACE_DELETE_DRY_RUN
	}
	var r C.vmenc_workspace_delete_result
	r.struct_size = C.uint32_t(unsafe.Sizeof(r))
	s := C.vmenc_workspace_delete_vm((*C.vmenc_workspace)(p), cs.str(principal, false), cs.str(name, false), flags, &r)
	res := DeleteResult{NumFiles: uint32(r.num_files), NumKeys: uint32(r.num_keys),
		NumKeysDestroyed: uint32(r.num_keys_destroyed), NumKeysKept: uint32(r.num_keys_kept),
		NumBytes: uint64(r.num_bytes), KeyProvider: C.GoString(&r.key_provider[0]), KEKID: C.GoString(&r.kek_id[0]),
		Message: C.GoString(&r.message[0])}
	if s != 0 {
		return res, newError(Status(s), "vmenc_workspace_delete_vm", res.Message)
	}
	return res, nil
}

// UnregisterVM takes VM name out of the inventory and the control store,
// keeping its files and keys (VirtualMachine.Inventory.Unregister; audited).
func (w *Workspace) UnregisterVM(principal, name string) error {
	p, err := w.h.use()
	if err != nil {
		return err
	}
	defer w.h.done()
	var cs cstrings
	defer cs.free()
	return check(C.vmenc_workspace_unregister_vm((*C.vmenc_workspace)(p), cs.str(principal, false), cs.str(name, false)),
		"vmenc_workspace_unregister_vm")
}

// RemoveKMS removes key provider alias on behalf of principal
// (OpManageKeyServers; audited). Its keys are not destroyed.
func (w *Workspace) RemoveKMS(principal, alias string) error {
	p, err := w.h.use()
	if err != nil {
		return err
	}
	defer w.h.done()
	var cs cstrings
	defer cs.free()
	return check(C.vmenc_workspace_remove_kms((*C.vmenc_workspace)(p), cs.str(principal, false), cs.str(alias, false)),
		"vmenc_workspace_remove_kms")
}

// KMSBackup exports file keystore alias to backupPath under passphrase, on
// behalf of principal (OpManageKeys; audited). The passphrase is copied to
// C memory and wiped there; Wipe yours afterwards.
func (w *Workspace) KMSBackup(principal, alias, backupPath string, passphrase []byte) error {
	p, err := w.h.use()
	if err != nil {
		return err
	}
	defer w.h.done()
	var cs cstrings
	defer cs.free()
	pp, pn := cs.secret(passphrase)
	return check(C.vmenc_workspace_kms_backup((*C.vmenc_workspace)(p), cs.str(principal, false), cs.str(alias, false),
		cs.str(backupPath, false), (*C.uint8_t)(pp), pn), "vmenc_workspace_kms_backup")
}
