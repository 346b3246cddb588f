package vmenc

/*
#include <stdlib.h>
#include <vmenc/vmenc.h>
*/
import "C"

import (
	"unsafe"
)

// ObjectType is the type of an inventory object.
type ObjectType int

// Inventory object types.
const (
	ObjectRoot ObjectType = iota
	ObjectDatacenter
	ObjectFolder
	ObjectCluster
	ObjectHost
	ObjectResourcePool
	ObjectDatastore
	ObjectVM
)

// Op is a policy operation (vmenc_policy_op).
type Op int

// Policy operations.
const (
	OpEncryptVM Op = iota + 1
	OpCreateVM
	OpDecryptVM
	OpCloneVM
	OpAddDisk
	OpRekeyShallow
	OpRekeyDeep
	OpMigrateVM
	OpRegisterVM
	OpRegisterHost
	OpEnableHostEncryption
	OpConsole
	OpExportVM
	OpManageKeys
	OpManageKeyServers
	OpManageEncryptionPolicies
	OpReadKeyServers
	OpPowerOn
	OpPowerOff
	OpEditSettings
	OpSnapshot
	OpView
	OpUploadFiles
	OpReadPolicy // read the policy document or the audit log: System.Read on the root
)

// Predefined roles.
const (
	RoleAdmin         = "Admin"
	RoleNoCryptoAdmin = "NoCryptoAdmin"
	RoleReadOnly      = "ReadOnly"
	RoleNoAccess      = "NoAccess"
)

// Storage policy file classes.
const (
	FileVMHome    = 1 << 0
	FileDisks     = 1 << 1
	FileCoreDumps = 1 << 2
)

// HostState is a host's encryption mode.
type HostState int

// Host encryption modes.
const (
	HostIncapable HostState = iota
	HostPrepared
	HostSafe
	HostPendingIncapable
)

// Policy is a policy model; safe for concurrent use.
type Policy struct{ h handle }

func newPolicy(p *C.vmenc_policy, owned bool) *Policy {
	pol := &Policy{}
	free := freeNoErr(func(p unsafe.Pointer) { C.vmenc_policy_free((*C.vmenc_policy)(p)) })
	if !owned {
		free = nil
	}
	pol.h.init(unsafe.Pointer(p), free)
	setFinalizer(pol, (*Policy).Close)
	return pol
}

// NewPolicy makes an empty policy with root object rootName.
func NewPolicy(rootName string) (*Policy, error) {
	if initErr != nil {
		return nil, initErr
	}
	var cs cstrings
	defer cs.free()
	var out *C.vmenc_policy
	if err := check(C.vmenc_policy_new(cs.str(rootName, false), &out), "vmenc_policy_new"); err != nil {
		return nil, err
	}
	return newPolicy(out, true), nil
}

func policyDocError(s C.vmenc_status, e *C.vmenc_policy_error, op string) error {
	if s == 0 {
		return nil
	}
	path := C.GoString(&e.path[0])
	return &Error{Status: Status(s), Op: op, Detail: path + ": " + C.GoString(&e.message[0])}
}

// LoadPolicyJSON builds a policy from a JSON document (docs/policy.md). A
// rejected document's error Detail holds the JSON path and the reason.
func LoadPolicyJSON(doc []byte) (*Policy, error) {
	if initErr != nil {
		return nil, initErr
	}
	var e C.vmenc_policy_error
	e.struct_size = C.uint32_t(unsafe.Sizeof(e))
	var out *C.vmenc_policy
	if err := policyDocError(C.vmenc_policy_load_json(bytesPtr(doc), C.size_t(len(doc)), &e, &out), &e, "vmenc_policy_load_json"); err != nil {
		return nil, err
	}
	return newPolicy(out, true), nil
}

// Close frees the policy (once nothing borrows it).
func (p *Policy) Close() error { return p.h.close() }

func (p *Policy) do(f func(*C.vmenc_policy, *cstrings) C.vmenc_status, op string) error {
	ptr, err := p.h.use()
	if err != nil {
		return err
	}
	defer p.h.done()
	var cs cstrings
	defer cs.free()
	return check(f((*C.vmenc_policy)(ptr), &cs), op)
}

// JSON returns the canonical JSON document.
func (p *Policy) JSON() ([]byte, error) {
	ptr, err := p.h.use()
	if err != nil {
		return nil, err
	}
	defer p.h.done()
	var out *C.uint8_t
	var n C.size_t
	if err := check(C.vmenc_policy_save_json((*C.vmenc_policy)(ptr), &out, &n), "vmenc_policy_save_json"); err != nil {
		return nil, err
	}
	defer C.vmenc_policy_buffer_free(out)
	return C.GoBytes(unsafe.Pointer(out), C.int(n)), nil
}

// AddUser adds a user principal.
func (p *Policy) AddUser(name string) error {
	return p.do(func(c *C.vmenc_policy, cs *cstrings) C.vmenc_status {
		return C.vmenc_policy_add_user(c, cs.str(name, false))
	}, "vmenc_policy_add_user")
}

// AddGroup adds a group principal.
func (p *Policy) AddGroup(name string) error {
	return p.do(func(c *C.vmenc_policy, cs *cstrings) C.vmenc_status {
		return C.vmenc_policy_add_group(c, cs.str(name, false))
	}, "vmenc_policy_add_group")
}

// AddMember makes member a member of group.
func (p *Policy) AddMember(group, member string) error {
	return p.do(func(c *C.vmenc_policy, cs *cstrings) C.vmenc_status {
		return C.vmenc_policy_add_member(c, cs.str(group, false), cs.str(member, false))
	}, "vmenc_policy_add_member")
}

// AddObject adds an inventory object under parent.
func (p *Policy) AddObject(name string, typ ObjectType, parent string) error {
	return p.do(func(c *C.vmenc_policy, cs *cstrings) C.vmenc_status {
		return C.vmenc_policy_add_object(c, cs.str(name, false), C.vmenc_policy_object_type(typ), cs.str(parent, false))
	}, "vmenc_policy_add_object")
}

// AddRole adds a custom role with the named privileges ("Cryptographer.Decrypt").
func (p *Policy) AddRole(name string, privileges []string) error {
	ids := make([]C.vmenc_policy_privilege, len(privileges)+1)
	var cs cstrings
	defer cs.free()
	for i, n := range privileges {
		if err := check(C.vmenc_policy_privilege_from_name(cs.str(n, false), &ids[i]), "vmenc_policy_privilege_from_name"); err != nil {
			return err
		}
	}
	return p.do(func(c *C.vmenc_policy, cs *cstrings) C.vmenc_status {
		return C.vmenc_policy_add_role(c, cs.str(name, false), &ids[0], C.size_t(len(privileges)))
	}, "vmenc_policy_add_role")
}

// Grant gives principal role on object (propagating to descendants or not).
func (p *Policy) Grant(principal, object, role string, propagate bool) error {
	return p.do(func(c *C.vmenc_policy, cs *cstrings) C.vmenc_status {
		return C.vmenc_policy_grant(c, cs.str(principal, false), cs.str(object, false), cs.str(role, false), boolInt(propagate))
	}, "vmenc_policy_grant")
}

// StoragePolicy describes a storage policy.
type StoragePolicy struct {
	Name        string
	Encrypt     bool
	FileClasses uint32 // FileVMHome | FileDisks | FileCoreDumps
	KeyProvider string
	Migration   int // 0 disabled, 1 opportunistic, 2 required
}

// SetStoragePolicy adds or replaces a storage policy.
func (p *Policy) SetStoragePolicy(sp StoragePolicy) error {
	return p.do(func(c *C.vmenc_policy, cs *cstrings) C.vmenc_status {
		var s C.vmenc_storage_policy_spec
		s.struct_size = C.uint32_t(unsafe.Sizeof(s))
		s.name = cs.str(sp.Name, false)
		s.encrypt = boolInt(sp.Encrypt)
		s.file_classes = C.uint32_t(sp.FileClasses)
		s.key_provider = cs.str(sp.KeyProvider, true)
		s.migration = C.vmenc_migration_encryption(sp.Migration)
		return C.vmenc_policy_set_storage_policy(c, &s)
	}, "vmenc_policy_set_storage_policy")
}

// SetHostState moves host to state if the transition is legal (the
// unchecked administrative path; vmenc_policy_set_host_state).
func (p *Policy) SetHostState(host string, state HostState) error {
	return p.do(func(c *C.vmenc_policy, cs *cstrings) C.vmenc_status {
		return C.vmenc_policy_set_host_state(c, cs.str(host, false), C.vmenc_host_crypto_state(state))
	}, "vmenc_policy_set_host_state")
}

// SetVMState records the host a VM is registered on ("" for none) and
// whether it is encrypted (vmenc_policy_set_vm_state).
func (p *Policy) SetVMState(vm, host string, encrypted bool) error {
	return p.do(func(c *C.vmenc_policy, cs *cstrings) C.vmenc_status {
		return C.vmenc_policy_set_vm_state(c, cs.str(vm, false), cs.str(host, true), boolInt(encrypted))
	}, "vmenc_policy_set_vm_state")
}

// HostState reads the encryption mode of host.
func (p *Policy) HostState(host string) (HostState, error) {
	var st C.vmenc_host_crypto_state
	err := p.do(func(c *C.vmenc_policy, cs *cstrings) C.vmenc_status {
		return C.vmenc_policy_get_host_state(c, cs.str(host, false), &st)
	}, "vmenc_policy_get_host_state")
	return HostState(st), err
}

// Request is one operation to decide on; unused object fields stay "".
type Request struct {
	Op                                Op
	VM, Folder, Host, Pool, Datastore string
	Flags                             uint32
}

// Decision is the answer of Check.
type Decision struct {
	Allowed              bool
	Status               Status
	MissingPrivilege     string
	MissingObject        string
	EnableHostEncryption bool
	Host                 string
	Message              string
}

// Err returns nil if allowed, else an *Error (errors.Is(err, ErrDenied)).
func (d Decision) Err() error {
	if d.Allowed {
		return nil
	}
	return &Error{Status: d.Status, Op: "vmenc_policy_check", Detail: d.Message}
}

// cRequest converts req; its strings live as long as cs.
func cRequest(cs *cstrings, req Request) C.vmenc_policy_request {
	var r C.vmenc_policy_request
	r.struct_size = C.uint32_t(unsafe.Sizeof(r))
	r.op = C.vmenc_policy_op(req.Op)
	r.vm = cs.str(req.VM, true)
	r.folder = cs.str(req.Folder, true)
	r.host = cs.str(req.Host, true)
	r.pool = cs.str(req.Pool, true)
	r.datastore = cs.str(req.Datastore, true)
	r.flags = C.uint32_t(req.Flags)
	return r
}

// Check decides whether principal may perform req. Allowed, denied and
// host-mode answers come back as a Decision with a nil error.
func (p *Policy) Check(principal string, req Request) (Decision, error) {
	ptr, err := p.h.use()
	if err != nil {
		return Decision{}, err
	}
	defer p.h.done()
	var cs cstrings
	defer cs.free()
	r := cRequest(&cs, req)
	var d C.vmenc_policy_decision
	d.struct_size = C.uint32_t(unsafe.Sizeof(d))
	s := C.vmenc_policy_check((*C.vmenc_policy)(ptr), cs.str(principal, false), &r, &d)
	if s != 0 && Status(s) != StatusDenied && Status(s) != StatusHostMode {
		return Decision{}, &Error{Status: Status(s), Op: "vmenc_policy_check", Detail: C.GoString(&d.message[0])}
	}
	var priv string
	if d.missing_privilege >= 0 {
		priv = goStr(C.vmenc_policy_privilege_name(C.int(d.missing_privilege)))
	}
	return Decision{d.allowed != 0, Status(d.status), priv, C.GoString(&d.missing_object[0]),
		d.enable_host_encryption != 0, C.GoString(&d.host[0]), C.GoString(&d.message[0])}, nil
}

// EditOp is an authorized policy edit (vmenc_policy_edit_op).
type EditOp int

// Policy edits (docs/policy.md, "Editing the policy").
const (
	EditAddRole EditOp = iota + 1
	EditAddUser
	EditAddGroup
	EditAddMember
	EditAddObject
	EditGrant
	EditRevoke
	EditSetStoragePolicy
	EditDisableHostEncryption
)

// Edit describes one policy edit; fields an edit does not read are ignored.
//   - AddRole: Name, Privileges
//   - AddUser, AddGroup: Name
//   - AddMember: Member into group Name
//   - AddObject: Name of ObjectType under Object
//   - Grant: principal Name gets Role on Object, Propagate
//   - Revoke: principal Name loses its permission on Object
//   - SetStoragePolicy: StoragePolicy
//   - DisableHostEncryption: host Name
type Edit struct {
	Op            EditOp
	Name          string
	Object        string
	Role          string
	Member        string
	Propagate     bool
	ObjectType    ObjectType
	Privileges    []string
	StoragePolicy *StoragePolicy
}

// cEdit is a vmenc_policy_edit whose pointers all point to C memory (the
// cgo rules forbid Go pointers inside memory passed to C).
type cEdit struct {
	e    C.vmenc_policy_edit
	cs   cstrings
	mems []unsafe.Pointer
}

func (c *cEdit) free() {
	c.cs.free()
	for _, m := range c.mems {
		C.free(m)
	}
}

func newCEdit(ed Edit) (*cEdit, error) {
	c := &cEdit{}
	c.e.struct_size = C.uint32_t(unsafe.Sizeof(c.e))
	c.e.op = C.vmenc_policy_edit_op(ed.Op)
	c.e.name = c.cs.str(ed.Name, true)
	c.e.object = c.cs.str(ed.Object, true)
	c.e.role = c.cs.str(ed.Role, true)
	c.e.member = c.cs.str(ed.Member, true)
	c.e.propagate = boolInt(ed.Propagate)
	c.e.object_type = C.vmenc_policy_object_type(ed.ObjectType)
	if n := len(ed.Privileges); n > 0 {
		m := C.malloc(C.size_t(n) * C.size_t(unsafe.Sizeof(C.vmenc_policy_privilege(0))))
		c.mems = append(c.mems, m)
		ids := unsafe.Slice((*C.vmenc_policy_privilege)(m), n)
		for i, name := range ed.Privileges {
			if err := check(C.vmenc_policy_privilege_from_name(c.cs.str(name, false), &ids[i]), "vmenc_policy_privilege_from_name"); err != nil {
				c.free()
				return nil, err
			}
		}
		c.e.privs = (*C.vmenc_policy_privilege)(m)
		c.e.num_privs = C.size_t(n)
	}
	if sp := ed.StoragePolicy; sp != nil {
		m := C.malloc(C.size_t(unsafe.Sizeof(C.vmenc_storage_policy_spec{})))
		c.mems = append(c.mems, m)
		s := (*C.vmenc_storage_policy_spec)(m)
		*s = C.vmenc_storage_policy_spec{}
		s.struct_size = C.uint32_t(unsafe.Sizeof(*s))
		s.name = c.cs.str(sp.Name, false)
		s.encrypt = boolInt(sp.Encrypt)
		s.file_classes = C.uint32_t(sp.FileClasses)
		s.key_provider = c.cs.str(sp.KeyProvider, true)
		s.migration = C.vmenc_migration_encryption(sp.Migration)
		c.e.storage_policy = s
	}
	return c, nil
}

func decisionOf(d *C.vmenc_policy_decision) Decision {
	var priv string
	if d.missing_privilege >= 0 {
		priv = goStr(C.vmenc_policy_privilege_name(C.int(d.missing_privilege)))
	}
	return Decision{d.allowed != 0, Status(d.status), priv, C.GoString(&d.missing_object[0]),
		d.enable_host_encryption != 0, C.GoString(&d.host[0]), C.GoString(&d.message[0])}
}

// editResult is the Decision and, unless the edit was applied, an *Error
// (errors.Is(err, ErrDenied) for a denial) carrying the decision's sentence.
func editResult(s C.vmenc_status, d *C.vmenc_policy_decision, op string) (Decision, error) {
	dec := decisionOf(d)
	if s != 0 {
		return dec, &Error{Status: Status(s), Op: op, Detail: dec.Message}
	}
	return dec, nil
}

// EditAs applies one edit on behalf of actor if the edit rule allows it
// (vmenc_policy_edit_as): the actor needs the edit's privilege and every
// privilege the edit would give or take, where it would. A refused edit
// changes nothing and returns the Decision (missing privilege and object)
// with an error. The unchecked calls (Grant, AddRole, ...) are the trusted
// bootstrap path.
func (p *Policy) EditAs(actor string, ed Edit) (Decision, error) {
	ptr, err := p.h.use()
	if err != nil {
		return Decision{}, err
	}
	defer p.h.done()
	ce, err := newCEdit(ed)
	if err != nil {
		return Decision{}, err
	}
	defer ce.free()
	var d C.vmenc_policy_decision
	d.struct_size = C.uint32_t(unsafe.Sizeof(d))
	s := C.vmenc_policy_edit_as((*C.vmenc_policy)(ptr), ce.cs.str(actor, false), &ce.e, &d)
	return editResult(s, &d, "vmenc_policy_edit_as")
}

// GrantAs is EditAs of a grant.
func (p *Policy) GrantAs(actor, principal, object, role string, propagate bool) (Decision, error) {
	return p.EditAs(actor, Edit{Op: EditGrant, Name: principal, Object: object, Role: role, Propagate: propagate})
}

// RevokeAs is EditAs of a revoke.
func (p *Policy) RevokeAs(actor, principal, object string) (Decision, error) {
	return p.EditAs(actor, Edit{Op: EditRevoke, Name: principal, Object: object})
}

// AddRoleAs is EditAs of a role definition.
func (p *Policy) AddRoleAs(actor, name string, privileges []string) (Decision, error) {
	return p.EditAs(actor, Edit{Op: EditAddRole, Name: name, Privileges: privileges})
}

// AddMemberAs is EditAs of a group membership.
func (p *Policy) AddMemberAs(actor, group, member string) (Decision, error) {
	return p.EditAs(actor, Edit{Op: EditAddMember, Name: group, Member: member})
}

// HasPrivilege reports whether principal holds privilege (a vSphere name,
// "Cryptographer.Access") on object, directly, through a group or inherited.
func (p *Policy) HasPrivilege(principal, object, privilege string) (bool, error) {
	var held C.int
	err := p.do(func(c *C.vmenc_policy, cs *cstrings) C.vmenc_status {
		var priv C.vmenc_policy_privilege
		if s := C.vmenc_policy_privilege_from_name(cs.str(privilege, false), &priv); s != 0 {
			return s
		}
		return C.vmenc_policy_has_privilege(c, cs.str(principal, false), cs.str(object, false), priv, &held)
	}, "vmenc_policy_has_privilege")
	return held != 0, err
}

// Privileges returns every privilege name of this library build, in enum order.
func Privileges() []string {
	n := int(C.vmenc_policy_privilege_count())
	out := make([]string, 0, n)
	for i := 0; i < n; i++ {
		out = append(out, goStr(C.vmenc_policy_privilege_name(C.int(i))))
	}
	return out
}
