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
	var r C.vmenc_policy_request
	r.struct_size = C.uint32_t(unsafe.Sizeof(r))
	r.op = C.vmenc_policy_op(req.Op)
	r.vm = cs.str(req.VM, true)
	r.folder = cs.str(req.Folder, true)
	r.host = cs.str(req.Host, true)
	r.pool = cs.str(req.Pool, true)
	r.datastore = cs.str(req.Datastore, true)
	r.flags = C.uint32_t(req.Flags)
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
