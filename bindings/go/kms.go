package vmenc

/*
#include <stdlib.h>
#include <vmenc/vmenc.h>
*/
import "C"

import (
	"context"
	"fmt"
	"strconv"
	"unsafe"
)

// Endpoint is a key-provider endpoint configuration: FileEndpoint,
// KMIPEndpoint or PKCS11Endpoint. String() never shows a passphrase or PIN.
type Endpoint interface {
	endpoint() (typ, address string, options []string, secret []byte)
}

// FileEndpoint is the embedded encrypted keystore ("file" provider).
type FileEndpoint struct {
	Path       string
	Passphrase []byte // copied into the provider's secure memory; Wipe yours afterwards
	Create     bool
	KDFOps     int // Argon2id passes for files written (0: default)
	KDFMemKiB  int // Argon2id memory for files written (0: default)
}

func (e FileEndpoint) endpoint() (string, string, []string, []byte) {
	var o []string
	if e.Create {
		o = append(o, "create=1")
	}
	if e.KDFOps > 0 {
		o = append(o, "kdf_ops="+strconv.Itoa(e.KDFOps))
	}
	if e.KDFMemKiB > 0 {
		o = append(o, "kdf_mem_kib="+strconv.Itoa(e.KDFMemKiB))
	}
	return "file", e.Path, o, e.Passphrase
}

// String hides the passphrase.
func (e FileEndpoint) String() string {
	return fmt.Sprintf("FileEndpoint{Path: %q, Passphrase: <redacted>, Create: %v}", e.Path, e.Create)
}

// GoString hides the passphrase.
func (e FileEndpoint) GoString() string { return e.String() }

// KMIPEndpoint is a KMIP server ("kmip" provider, mutual TLS).
type KMIPEndpoint struct {
	Address          string // "host:port"
	CA, Cert, Key    string // PEM files
	ServerName       string
	ConnectTimeoutMs int
	RequestTimeoutMs int
}

func (e KMIPEndpoint) endpoint() (string, string, []string, []byte) {
	var o []string
	add := func(k, v string) {
		if v != "" {
			o = append(o, k+"="+v)
		}
	}
	add("ca", e.CA)
	add("cert", e.Cert)
	add("key", e.Key)
	add("server_name", e.ServerName)
	if e.ConnectTimeoutMs > 0 {
		add("connect_timeout_ms", strconv.Itoa(e.ConnectTimeoutMs))
	}
	if e.RequestTimeoutMs > 0 {
		add("request_timeout_ms", strconv.Itoa(e.RequestTimeoutMs))
	}
	return "kmip", e.Address, o, nil
}

// PKCS11Endpoint is a PKCS#11 token ("pkcs11" provider).
type PKCS11Endpoint struct {
	Module      string
	TokenLabel  string
	PIN         []byte // copied into secure memory; Wipe yours afterwards
	Mechanism   string // "kwp", "kw", "gcm" or ""
	KeyLabel    string
	MaxSessions int
}

func (e PKCS11Endpoint) endpoint() (string, string, []string, []byte) {
	o := []string{"token_label=" + e.TokenLabel}
	if e.Mechanism != "" {
		o = append(o, "mechanism="+e.Mechanism)
	}
	if e.KeyLabel != "" {
		o = append(o, "key_label="+e.KeyLabel)
	}
	if e.MaxSessions > 0 {
		o = append(o, "max_sessions="+strconv.Itoa(e.MaxSessions))
	}
	return "pkcs11", e.Module, o, e.PIN
}

// String hides the PIN.
func (e PKCS11Endpoint) String() string {
	return fmt.Sprintf("PKCS11Endpoint{Module: %q, TokenLabel: %q, PIN: <redacted>}", e.Module, e.TokenLabel)
}

// GoString hides the PIN.
func (e PKCS11Endpoint) GoString() string { return e.String() }

func endpointConfig(cs *cstrings, ep Endpoint) C.vmenc_kms_endpoint_config {
	typ, addr, opts, secret := ep.endpoint()
	var c C.vmenc_kms_endpoint_config
	c.struct_size = C.uint32_t(unsafe.Sizeof(c))
	c._type = cs.str(typ, false)
	c.address = cs.str(addr, false)
	c.options = cs.array(opts)
	p, n := cs.secret(secret)
	c.secret = (*C.uint8_t)(p)
	c.secret_len = n
	return c
}

// ClusterOptions tune a cluster's failover back-off.
type ClusterOptions struct {
	BackoffInitialMs, BackoffMaxMs uint32
	NoJitter                       bool
}

func (o *ClusterOptions) c() C.vmenc_kms_cluster_options {
	var c C.vmenc_kms_cluster_options
	c.struct_size = C.uint32_t(unsafe.Sizeof(c))
	if o != nil {
		c.backoff_initial_ms = C.uint32_t(o.BackoffInitialMs)
		c.backoff_max_ms = C.uint32_t(o.BackoffMaxMs)
		if o.NoJitter {
			c.flags = C.VMENC_KMS_CLUSTER_NO_JITTER
		}
	}
	return c
}

// KeyManagerOptions configure a KeyManager.
type KeyManagerOptions struct {
	CacheCapacity    uint32
	CacheTTLMs       uint64
	NoRoundtripProof bool // tests and benchmarks only
}

// KeyManager holds a host's clusters (key providers by alias) and a KEK
// cache in secure memory. Safe for concurrent use.
type KeyManager struct {
	h        handle
	borrowed bool
}

// NewKeyManager makes an empty key manager (opts may be nil).
func NewKeyManager(opts *KeyManagerOptions) (*KeyManager, error) {
	if initErr != nil {
		return nil, initErr
	}
	var o C.vmenc_keymgr_options
	o.struct_size = C.uint32_t(unsafe.Sizeof(o))
	if opts != nil {
		o.cache_capacity = C.uint32_t(opts.CacheCapacity)
		o.cache_ttl_ms = C.uint64_t(opts.CacheTTLMs)
		if opts.NoRoundtripProof {
			o.flags = C.VMENC_KEYMGR_NO_ROUNDTRIP_PROOF
		}
	}
	var out *C.vmenc_keymgr
	if err := check(C.vmenc_keymgr_new(&o, &out), "vmenc_keymgr_new"); err != nil {
		return nil, err
	}
	m := &KeyManager{}
	m.h.init(unsafe.Pointer(out), freeNoErr(func(p unsafe.Pointer) { C.vmenc_keymgr_free((*C.vmenc_keymgr)(p)) }))
	setFinalizer(m, (*KeyManager).Close)
	return m, nil
}

// Close frees the manager, its clusters, and wipes cached KEKs.
func (m *KeyManager) Close() error { return m.h.close() }

func (m *KeyManager) ptr() (*C.vmenc_keymgr, error) {
	p, err := m.h.use()
	return (*C.vmenc_keymgr)(p), err
}

// AddCluster adds key provider alias with these endpoints (all one type).
func (m *KeyManager) AddCluster(alias string, endpoints []Endpoint, opts *ClusterOptions) error {
	p, err := m.ptr()
	if err != nil {
		return err
	}
	defer m.h.done()
	var cs cstrings
	defer cs.free()
	n := len(endpoints)
	if n == 0 {
		n = 1
	}
	arr := (*[1 << 16]C.vmenc_kms_endpoint_config)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(C.vmenc_kms_endpoint_config{}))))[:n:n]
	defer C.free(unsafe.Pointer(&arr[0]))
	for i, ep := range endpoints {
		arr[i] = endpointConfig(&cs, ep)
	}
	o := opts.c()
	return check(C.vmenc_keymgr_add_cluster(p, cs.str(alias, false), &arr[0], C.size_t(len(endpoints)), &o), "vmenc_keymgr_add_cluster")
}

// RemoveCluster removes key provider alias and drops its cached KEKs.
func (m *KeyManager) RemoveCluster(alias string) error {
	p, err := m.ptr()
	if err != nil {
		return err
	}
	defer m.h.done()
	var cs cstrings
	defer cs.free()
	return check(C.vmenc_keymgr_remove_cluster(p, cs.str(alias, false)), "vmenc_keymgr_remove_cluster")
}

// CreateKEK creates a KEK in cluster alias (name may be "") and returns its ID.
// The context's deadline becomes the C call's timeout.
func (m *KeyManager) CreateKEK(ctx context.Context, alias, name string) (string, error) {
	ms, err := timeoutMs(ctx)
	if err != nil {
		return "", err
	}
	p, err := m.ptr()
	if err != nil {
		return "", err
	}
	defer m.h.done()
	var cs cstrings
	defer cs.free()
	var buf [C.VMENC_KMS_KEY_ID_CAP]C.char
	if err := check(C.vmenc_keymgr_create_kek(p, cs.str(alias, false), cs.str(name, true), ms, &buf[0], C.size_t(len(buf))), "vmenc_keymgr_create_kek"); err != nil {
		return "", err
	}
	return C.GoString(&buf[0]), nil
}

// GetKEK returns KEK (alias, keyID), cached or fetched.
func (m *KeyManager) GetKEK(ctx context.Context, alias, keyID string) (*KEK, error) {
	ms, err := timeoutMs(ctx)
	if err != nil {
		return nil, err
	}
	p, err := m.ptr()
	if err != nil {
		return nil, err
	}
	defer m.h.done()
	var cs cstrings
	defer cs.free()
	var out *C.vmenc_kek
	if err := check(C.vmenc_keymgr_get_kek(p, cs.str(alias, false), cs.str(keyID, false), ms, &out), "vmenc_keymgr_get_kek"); err != nil {
		return nil, err
	}
	return newKEK(out), nil
}

// WrapDEK wraps dek for KEK (alias, kekID) bound to wctx, proving the record opens again.
func (m *KeyManager) WrapDEK(ctx context.Context, alias, kekID string, dek *DEK, wctx WrapContext) (*WrappedKey, error) {
	ms, err := timeoutMs(ctx)
	if err != nil {
		return nil, err
	}
	p, err := m.ptr()
	if err != nil {
		return nil, err
	}
	defer m.h.done()
	dp, err := dek.h.use()
	if err != nil {
		return nil, err
	}
	defer dek.h.done()
	var cs cstrings
	defer cs.free()
	c := wctx.c(&cs)
	var out *C.vmenc_wrapped_key
	if err := check(C.vmenc_keymgr_wrap_dek(p, cs.str(alias, false), cs.str(kekID, false), (*C.vmenc_dek)(dp), &c, ms, &out), "vmenc_keymgr_wrap_dek"); err != nil {
		return nil, err
	}
	return newWrappedKey(out), nil
}

// UnwrapDEK opens wk (alias and KEK ID read from the record) bound to wctx.
func (m *KeyManager) UnwrapDEK(ctx context.Context, wk *WrappedKey, wctx WrapContext) (*DEK, error) {
	ms, err := timeoutMs(ctx)
	if err != nil {
		return nil, err
	}
	p, err := m.ptr()
	if err != nil {
		return nil, err
	}
	defer m.h.done()
	wp, err := wk.h.use()
	if err != nil {
		return nil, err
	}
	defer wk.h.done()
	var cs cstrings
	defer cs.free()
	c := wctx.c(&cs)
	var out *C.vmenc_dek
	if err := check(C.vmenc_keymgr_unwrap_dek(p, (*C.vmenc_wrapped_key)(wp), &c, ms, &out), "vmenc_keymgr_unwrap_dek"); err != nil {
		return nil, err
	}
	return newDEK(out), nil
}

func (m *KeyManager) keyOp(ctx context.Context, op string, alias, keyID string) error {
	ms, err := timeoutMs(ctx)
	if err != nil {
		return err
	}
	p, err := m.ptr()
	if err != nil {
		return err
	}
	defer m.h.done()
	var cs cstrings
	defer cs.free()
	a, k := cs.str(alias, false), cs.str(keyID, false)
	if op == "revoke" {
		return check(C.vmenc_keymgr_revoke_kek(p, a, k, ms), "vmenc_keymgr_revoke_kek")
	}
	return check(C.vmenc_keymgr_destroy_kek(p, a, k, ms), "vmenc_keymgr_destroy_kek")
}

// RevokeKEK revokes the KEK in its KMS and drops it from the cache.
func (m *KeyManager) RevokeKEK(ctx context.Context, alias, keyID string) error {
	return m.keyOp(ctx, "revoke", alias, keyID)
}

// DestroyKEK destroys the KEK in its KMS and drops it from the cache.
func (m *KeyManager) DestroyKEK(ctx context.Context, alias, keyID string) error {
	return m.keyOp(ctx, "destroy", alias, keyID)
}

// Forget drops cached KEKs: one, all of alias (keyID ""), or all (both "").
func (m *KeyManager) Forget(alias, keyID string) error {
	p, err := m.ptr()
	if err != nil {
		return err
	}
	defer m.h.done()
	var cs cstrings
	defer cs.free()
	return check(C.vmenc_keymgr_forget(p, cs.str(alias, true), cs.str(keyID, true)), "vmenc_keymgr_forget")
}

// CheckHealth probes every endpoint of alias and returns how many answered.
func (m *KeyManager) CheckHealth(ctx context.Context, alias string) (int, error) {
	ms, err := timeoutMs(ctx)
	if err != nil {
		return 0, err
	}
	p, err := m.ptr()
	if err != nil {
		return 0, err
	}
	defer m.h.done()
	var cs cstrings
	defer cs.free()
	var n C.size_t
	err = check(C.vmenc_keymgr_check_health(p, cs.str(alias, false), ms, &n), "vmenc_keymgr_check_health")
	return int(n), err
}

// KeyManagerStats is a snapshot of the manager's counters.
type KeyManagerStats struct {
	Hits, Misses, Failovers, Errors, Evictions, Expirations, WrongKeys, RemoteOps, Cached, RoundtripFailures uint64
}

// Stats returns a snapshot of the counters.
func (m *KeyManager) Stats() (KeyManagerStats, error) {
	p, err := m.ptr()
	if err != nil {
		return KeyManagerStats{}, err
	}
	defer m.h.done()
	var s C.vmenc_keymgr_stats
	s.struct_size = C.uint32_t(unsafe.Sizeof(s))
	if err := check(C.vmenc_keymgr_get_stats(p, &s), "vmenc_keymgr_get_stats"); err != nil {
		return KeyManagerStats{}, err
	}
	return KeyManagerStats{uint64(s.hits), uint64(s.misses), uint64(s.failovers), uint64(s.errors),
		uint64(s.evictions), uint64(s.expirations), uint64(s.wrong_keys), uint64(s.remote_ops),
		uint64(s.cached), uint64(s.roundtrip_failures)}, nil
}

// CreateKeystore writes a new, empty file keystore (never overwrites).
func CreateKeystore(path string, passphrase []byte, kdfOps, kdfMemKiB uint32) error {
	if initErr != nil {
		return initErr
	}
	var cs cstrings
	defer cs.free()
	var o C.vmenc_kms_file_options
	o.struct_size = C.uint32_t(unsafe.Sizeof(o))
	o.kdf_opslimit = C.uint32_t(kdfOps)
	o.kdf_memlimit_kib = C.uint32_t(kdfMemKiB)
	pp, n := cs.secret(passphrase)
	return check(C.vmenc_kms_file_create(cs.str(path, false), (*C.uint8_t)(pp), n, &o), "vmenc_kms_file_create")
}
