"""Loading libvmenc and declaring the C ABI (ctypes). Private module.

Every struct here mirrors one in ``include/vmenc/*.h`` field for field; each
carries ``struct_size`` first, so the library can tell which version of the
struct it is given (the size this binding was written against is what is
sent). Functions are declared with exact argument types so ctypes converts
and checks every argument.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char, c_char_p, c_int, c_int32, c_size_t,
                    c_uint, c_uint8, c_uint16, c_uint32, c_uint64, c_void_p)

# The binding is written against this ABI: SONAME libvmenc.so.0, version
# 0.4 or newer (symbols only ever get added within one major version).
ABI_MAJOR = 0
MIN_VERSION = (0 << 16) | (4 << 8) | 0


class LibraryError(ImportError):
    """libvmenc could not be loaded, or is not a version this binding supports."""


def _candidates() -> list:
    env = os.environ.get("VMENC_LIBRARY")
    if env:
        return [env]
    names = ["libvmenc.so.0"]
    found = ctypes.util.find_library("vmenc")
    if found and found not in names:
        names.append(found)
    return names


def _load() -> ctypes.CDLL:
    errors = []
    for name in _candidates():
        try:
            return ctypes.CDLL(name)
        except OSError as e:
            errors.append(f"{name}: {e}")
    raise LibraryError(
        "cannot load libvmenc (" + "; ".join(errors) + "). Install vmenc, add its libdir to "
        "LD_LIBRARY_PATH, or set VMENC_LIBRARY to the path of libvmenc.so.0.")


lib = _load()

try:
    lib.vmenc_version_number.restype = c_uint32
    lib.vmenc_version_number.argtypes = []
    lib.vmenc_version_string.restype = c_char_p
    lib.vmenc_version_string.argtypes = []
    VERSION_NUMBER = int(lib.vmenc_version_number())
    VERSION = lib.vmenc_version_string().decode()
except AttributeError as e:  # not libvmenc at all
    raise LibraryError(f"{lib._name} is not libvmenc: {e}") from None

if VERSION_NUMBER >> 16 != ABI_MAJOR or VERSION_NUMBER < MIN_VERSION:
    raise LibraryError(
        f"{lib._name} is libvmenc {VERSION}; this binding needs {ABI_MAJOR}.x >= "
        f"{MIN_VERSION >> 16}.{(MIN_VERSION >> 8) & 0xff}.{MIN_VERSION & 0xff}")

c_status = c_int
c_char_pp = POINTER(c_char_p)
vp = c_void_p

# ---------------------------------------------------------------- structs

class WrapContext(Structure):
    _fields_ = [("struct_size", c_uint32), ("vm_uuid", c_char_p), ("disk_id", c_char_p),
                ("purpose", c_char_p)]


class EndpointConfig(Structure):
    _fields_ = [("struct_size", c_uint32), ("type", c_char_p), ("address", c_char_p),
                ("options", c_char_pp), ("secret", c_void_p), ("secret_len", c_size_t)]


class ClusterOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("backoff_initial_ms", c_uint32),
                ("backoff_max_ms", c_uint32), ("flags", c_uint32)]


class EndpointInfo(Structure):
    _fields_ = [("struct_size", c_uint32), ("name", c_char_p), ("type_name", c_char_p),
                ("consecutive_failures", c_uint32), ("backoff_remaining_ms", c_uint64),
                ("last_status", c_int32), ("num_calls", c_uint64), ("num_failures", c_uint64)]


class KeymgrOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("cache_capacity", c_uint32), ("cache_ttl_ms", c_uint64),
                ("remote_wrap_alg", c_uint32), ("flags", c_uint32), ("reserved", c_uint32)]


class KeymgrStats(Structure):
    _fields_ = [("struct_size", c_uint32)] + [(n, c_uint64) for n in (
        "hits", "misses", "failovers", "errors", "evictions", "expirations", "wrong_keys",
        "remote_ops", "cached", "roundtrip_failures")]


class FileOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("flags", c_uint32), ("kdf_opslimit", c_uint32),
                ("kdf_memlimit_kib", c_uint32), ("max_kdf_opslimit", c_uint32),
                ("max_kdf_memlimit_kib", c_uint32)]


POLICY_NAME_MAX = 255
POLICY_MESSAGE_MAX = 640


class StoragePolicySpec(Structure):
    _fields_ = [("struct_size", c_uint32), ("name", c_char_p), ("encrypt", c_int),
                ("file_classes", c_uint32), ("key_provider", c_char_p), ("migration", c_int)]


class PolicyEdit(Structure):
    _fields_ = [("struct_size", c_uint32), ("op", c_int), ("name", c_char_p), ("object", c_char_p),
                ("role", c_char_p), ("member", c_char_p), ("propagate", c_int), ("object_type", c_int),
                ("privs", POINTER(c_int)), ("num_privs", c_size_t),
                ("storage_policy", POINTER(StoragePolicySpec))]


class PolicyRequest(Structure):
    _fields_ = [("struct_size", c_uint32), ("op", c_int), ("vm", c_char_p), ("folder", c_char_p),
                ("host", c_char_p), ("pool", c_char_p), ("datastore", c_char_p), ("flags", c_uint32)]


class PolicyDecision(Structure):
    _fields_ = [("struct_size", c_uint32), ("allowed", c_int), ("status", c_int),
                ("missing_privilege", c_int), ("missing_object", c_char * (POLICY_NAME_MAX + 1)),
                ("enable_host_encryption", c_int), ("host", c_char * (POLICY_NAME_MAX + 1)),
                ("message", c_char * POLICY_MESSAGE_MAX)]


class PolicyError(Structure):
    _fields_ = [("struct_size", c_uint32), ("status", c_int), ("path", c_char * POLICY_MESSAGE_MAX),
                ("message", c_char * POLICY_MESSAGE_MAX), ("offset", c_size_t)]


class AuditEvent(Structure):
    _fields_ = [("struct_size", c_uint32), ("time_ms", c_uint64), ("principal", c_char_p),
                ("operation", c_char_p), ("target", c_char_p), ("key_provider", c_char_p),
                ("key_ids", c_char_pp), ("num_key_ids", c_size_t), ("outcome", c_int),
                ("status", c_int32), ("reason", c_char_p)]


class AuditLogOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("path", c_char_p), ("key", c_void_p), ("key_len", c_size_t),
                ("fsync", c_int), ("fsync_every_n", c_uint32), ("flags", c_uint32),
                ("start_seq", c_uint64), ("start_hash", c_void_p), ("start_chain_id", c_void_p)]


class AuditLogStats(Structure):
    _fields_ = [("struct_size", c_uint32), ("records", c_uint64), ("bytes", c_uint64), ("syncs", c_uint64)]


class AuditVerifyOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("key", c_void_p), ("key_len", c_size_t), ("start_seq", c_uint64),
                ("start_hash", c_void_p), ("expected_last_seq", c_uint64)]


class AuditVerifyResult(Structure):
    _fields_ = [("struct_size", c_uint32), ("defect", c_int), ("num_records", c_uint64),
                ("bad_file", c_size_t), ("bad_index", c_uint64), ("bad_offset", c_uint64),
                ("bad_seq", c_uint64), ("last_seq", c_uint64), ("last_hash", c_uint8 * 32)]


class XTSIov(Structure):
    _fields_ = [("first_sector", c_uint64), ("in_", c_void_p), ("out", c_void_p), ("len", c_size_t)]


AUDIT_CALLBACK = CFUNCTYPE(c_int, c_void_p, POINTER(AuditEvent), c_char_p, c_size_t)

VM_NAME_MAX = 64
VM_UUID_LEN = 36
DISK_ID_MAX = 16
PROVIDER_ALIAS_MAX = 63
KEY_ID_MAX = 255
KMS_KEY_ID_CAP = KEY_ID_MAX + 1

CLOCK_FN = CFUNCTYPE(c_uint64, c_void_p)


class HostOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("host_id", c_char_p), ("keymgr", c_void_p),
                ("policy", c_void_p), ("audit", c_void_p), ("kms_timeout_ms", c_uint32),
                ("clock_ms", CLOCK_FN), ("clock_ctx", c_void_p), ("flags", c_uint32)]


class VMCreateOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("principal", c_char_p), ("home_dir", c_char_p),
                ("name", c_char_p), ("folder", c_char_p), ("pool", c_char_p), ("datastore", c_char_p),
                ("storage_policy", c_char_p), ("kek_id", c_char_p), ("memory_bytes", c_uint64),
                ("flags", c_uint32)]


class VMInfo(Structure):
    _fields_ = [("struct_size", c_uint32), ("name", c_char * (VM_NAME_MAX + 1)),
                ("uuid", c_char * (VM_UUID_LEN + 1)), ("encrypted", c_int), ("locked", c_int),
                ("key_provider", c_char * (PROVIDER_ALIAS_MAX + 1)), ("kek_id", c_char * (KEY_ID_MAX + 1)),
                ("num_disks", c_uint32), ("num_missing_keys", c_uint32),
                ("storage_policy", c_char * (POLICY_NAME_MAX + 1))]


class DiskInfo(Structure):
    _fields_ = [("struct_size", c_uint32), ("disk_id", c_char * (DISK_ID_MAX + 1)),
                ("file_name", c_char * 256), ("capacity", c_uint64), ("sector_size", c_uint32),
                ("state", c_int), ("key_provider", c_char * (PROVIDER_ALIAS_MAX + 1)),
                ("kek_id", c_char * (KEY_ID_MAX + 1)), ("locked", c_int)]


class DiskCreateOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("disk_id", c_char_p), ("capacity", c_uint64),
                ("sector_size", c_uint32), ("file_base", c_char_p), ("datastore", c_char_p),
                ("flags", c_uint32)]


class VMCloneOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("principal", c_char_p), ("home_dir", c_char_p),
                ("name", c_char_p), ("folder", c_char_p), ("pool", c_char_p), ("datastore", c_char_p),
                ("storage_policy", c_char_p), ("flags", c_uint32)]


class ConvertOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("segment_bytes", c_uint64), ("flags", c_uint32)]


class ConvertProgress(Structure):
    _fields_ = [("struct_size", c_uint32), ("state", c_int), ("bytes_done", c_uint64),
                ("bytes_total", c_uint64), ("segments_done", c_uint64), ("segments_total", c_uint64),
                ("bytes_per_second", c_uint64), ("done", c_int)]


PROGRESS_FN = CFUNCTYPE(c_int, c_void_p, c_char_p, POINTER(ConvertProgress))


class ApplyOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("progress", PROGRESS_FN), ("progress_ctx", c_void_p),
                ("segment_bytes", c_uint64), ("flags", c_uint32)]


WORKSPACE_PATH_MAX = 1024
WORKSPACE_MESSAGE_MAX = 512


class WorkspaceError(Structure):
    _fields_ = [("struct_size", c_uint32), ("status", c_int), ("file", c_char * WORKSPACE_PATH_MAX),
                ("line", c_uint32), ("message", c_char * WORKSPACE_MESSAGE_MAX)]


class WorkspaceCreateOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("passphrase", c_void_p), ("passphrase_len", c_size_t),
                ("admin", c_char_p), ("host_id", c_char_p), ("key_provider", c_char_p),
                ("folder", c_char_p), ("kdf_opslimit", c_uint32), ("kdf_memlimit_kib", c_uint32),
                ("flags", c_uint32)]


class WorkspaceOpenOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("passphrase", c_void_p), ("passphrase_len", c_size_t),
                ("audit_log", c_char_p), ("lock_timeout_ms", c_uint32), ("flags", c_uint32)]


class WorkspaceResealResult(Structure):
    _fields_ = [("struct_size", c_uint32), ("old_sha256", c_char * 65), ("new_sha256", c_char * 65),
                ("generation", c_uint64), ("was_sealed", c_int), ("seal_was_valid", c_int)]


class WorkspaceKMSSpec(Structure):
    _fields_ = [("struct_size", c_uint32), ("alias", c_char_p), ("type", c_char_p),
                ("endpoints", POINTER(c_char_p)), ("num_endpoints", c_size_t),
                ("options", POINTER(c_char_p)), ("secret_file", c_char_p), ("flags", c_uint32)]


class WorkspaceKMSInfo(Structure):
    _fields_ = [("struct_size", c_uint32), ("alias", c_char * (PROVIDER_ALIAS_MAX + 1)), ("type", c_char * 64),
                ("num_endpoints", c_uint32), ("num_loaded", c_uint32), ("load_status", c_int),
                ("embedded", c_int), ("audit_key", c_int), ("load_detail", c_char * WORKSPACE_MESSAGE_MAX)]


class WorkspaceVMSpec(Structure):
    _fields_ = [("struct_size", c_uint32), ("name", c_char_p), ("folder", c_char_p),
                ("storage_policy", c_char_p), ("kek_id", c_char_p), ("memory_bytes", c_uint64),
                ("disk_capacities", POINTER(c_uint64)), ("num_disks", c_size_t), ("sector_size", c_uint32),
                ("flags", c_uint32)]


class WorkspaceDeleteResult(Structure):
    _fields_ = [("struct_size", c_uint32), ("num_files", c_uint32), ("num_bytes", c_uint64),
                ("num_keys", c_uint32), ("num_keys_destroyed", c_uint32), ("num_keys_kept", c_uint32),
                ("key_provider", c_char * (PROVIDER_ALIAS_MAX + 1)), ("kek_id", c_char * (KEY_ID_MAX + 1)),
                ("message", c_char * WORKSPACE_MESSAGE_MAX)]


class VMCryptoState(Structure):
    _fields_ = [("struct_size", c_uint32), ("home_encrypted", c_int), ("home_provider", c_char_p),
                ("num_disks", c_size_t), ("disks", c_void_p), ("core_dumps_encrypted", c_int),
                ("core_dump_provider", c_char_p), ("migration", c_int)]


class PolicyAction(Structure):
    _fields_ = [("type", c_int), ("disk", c_size_t), ("migration", c_int),
                ("key_provider", c_char * (POLICY_NAME_MAX + 1))]


WORKSPACE_DELETE_KEEP_FILES = 1 << 0
WORKSPACE_DELETE_DESTROY_KEYS = 1 << 1
WORKSPACE_DELETE_DRY_RUN = 1 << 2
WORKSPACE_KMS_CREATE = 1 << 0
VM_FILE_EXPORT = 1 << 3  # vm.h VMENC_VM_FILE_EXPORT

WORKSPACE_VM_FN = CFUNCTYPE(c_int, c_void_p, c_char_p)

# ---------------------------------------------------------------- functions

S = c_status
P = POINTER
sz = c_size_t
u32 = c_uint32
u64 = c_uint64
cs = c_char_p

_PROTOS = {
    # core / common
    "vmenc_init": (S, []),
    "vmenc_strerror": (cs, [c_int]),
    "vmenc_status_name": (cs, [c_int]),
    "vmenc_status_category_of": (c_int, [c_int]),
    "vmenc_cpu_features": (u32, []),
    "vmenc_random_bytes": (S, [vp, sz]),
    "vmenc_memzero": (None, [vp, sz]),
    # xts
    "vmenc_xts_new_impl": (S, [vp, sz, u32, cs, P(vp)]),
    "vmenc_xts_encrypt": (S, [vp, u64, vp, vp, sz]),
    "vmenc_xts_decrypt": (S, [vp, u64, vp, vp, sz]),
    "vmenc_xts_encrypt_unit": (S, [vp, vp, vp, vp, sz]),
    "vmenc_xts_decrypt_unit": (S, [vp, vp, vp, vp, sz]),
    "vmenc_xts_impl_name": (cs, [vp]),
    "vmenc_xts_sector_size": (u32, [vp]),
    "vmenc_xts_impl_available": (S, [cs]),
    "vmenc_xts_free": (None, [vp]),
    # The vector is passed as a packed buffer (see xts.py), hence void*.
    "vmenc_xts_encrypt_iov": (S, [vp, vp, sz]),
    "vmenc_xts_decrypt_iov": (S, [vp, vp, sz]),
    # keys
    "vmenc_dek_generate": (S, [P(vp)]),
    "vmenc_dek_new_from_bytes": (S, [vp, sz, P(vp)]),
    "vmenc_dek_equal": (S, [vp, vp]),
    "vmenc_dek_free": (None, [vp]),
    "vmenc_xts_new_from_dek": (S, [vp, u32, P(vp)]),
    "vmenc_kek_generate": (S, [P(vp)]),
    "vmenc_kek_new_from_bytes": (S, [vp, sz, P(vp)]),
    "vmenc_kek_equal": (S, [vp, vp]),
    "vmenc_kek_free": (None, [vp]),
    "vmenc_dek_wrap": (S, [vp, vp, c_int, cs, cs, P(WrapContext), P(vp)]),
    "vmenc_wrapped_key_unwrap": (S, [vp, vp, P(WrapContext), P(vp)]),
    "vmenc_wrapped_key_parse": (S, [vp, sz, P(vp)]),
    "vmenc_wrapped_key_parse_text": (S, [cs, sz, P(vp)]),
    "vmenc_wrapped_key_serialize": (S, [vp, P(vp), P(sz)]),
    "vmenc_wrapped_key_to_text": (S, [vp, P(vp)]),
    "vmenc_wrapped_key_alg": (c_int, [vp]),
    "vmenc_wrapped_key_provider_alias": (cs, [vp]),
    "vmenc_wrapped_key_kek_id": (cs, [vp]),
    "vmenc_wrapped_key_free": (None, [vp]),
    "vmenc_buffer_free": (None, [vp]),
    "vmenc_aes_kwp_wrap": (S, [vp, sz, vp, sz, vp, sz, P(sz)]),
    "vmenc_aes_kwp_unwrap": (S, [vp, sz, vp, sz, vp, sz, P(sz)]),
    # kms: providers
    "vmenc_kms_provider_new_builtin": (S, [P(EndpointConfig), P(vp)]),
    "vmenc_kms_provider_create_kek": (S, [vp, cs, u32, vp, sz]),
    "vmenc_kms_provider_get_kek": (S, [vp, cs, u32, P(vp)]),
    "vmenc_kms_provider_revoke_kek": (S, [vp, cs, u32]),
    "vmenc_kms_provider_destroy_kek": (S, [vp, cs, u32]),
    "vmenc_kms_provider_health": (S, [vp, u32]),
    "vmenc_kms_provider_free": (None, [vp]),
    "vmenc_kms_file_create": (S, [cs, vp, sz, P(FileOptions)]),
    "vmenc_kms_file_count": (S, [vp, P(sz), P(sz)]),
    "vmenc_kmip_locate": (S, [vp, cs, u32, vp, sz, P(sz)]),
    "vmenc_kmip_protocol_version": (S, [vp, u32, P(c_uint), P(c_uint)]),
    # kms: clusters
    "vmenc_kms_cluster_new": (S, [cs, P(ClusterOptions), P(vp)]),
    "vmenc_kms_cluster_add_endpoint_config": (S, [vp, P(EndpointConfig)]),
    "vmenc_kms_cluster_free": (None, [vp]),
    "vmenc_kms_cluster_alias": (cs, [vp]),
    "vmenc_kms_cluster_num_endpoints": (sz, [vp]),
    "vmenc_kms_cluster_endpoint_info": (S, [vp, sz, P(EndpointInfo)]),
    "vmenc_kms_cluster_num_failovers": (u64, [vp]),
    "vmenc_kms_cluster_create_kek": (S, [vp, cs, u32, vp, sz, P(sz)]),
    "vmenc_kms_cluster_get_kek": (S, [vp, cs, u32, P(vp), P(sz)]),
    "vmenc_kms_cluster_revoke_kek": (S, [vp, cs, u32, P(sz)]),
    "vmenc_kms_cluster_destroy_kek": (S, [vp, cs, u32, P(sz)]),
    "vmenc_kms_cluster_check_health": (S, [vp, u32, P(sz)]),
    # kms: key manager
    "vmenc_keymgr_new": (S, [P(KeymgrOptions), P(vp)]),
    "vmenc_keymgr_free": (None, [vp]),
    "vmenc_keymgr_take_cluster": (S, [vp, vp]),
    "vmenc_keymgr_add_cluster": (S, [vp, cs, P(EndpointConfig), sz, P(ClusterOptions)]),
    "vmenc_keymgr_remove_cluster": (S, [vp, cs]),
    "vmenc_keymgr_create_kek": (S, [vp, cs, cs, u32, vp, sz]),
    "vmenc_keymgr_get_kek": (S, [vp, cs, cs, u32, P(vp)]),
    "vmenc_keymgr_wrap_dek": (S, [vp, cs, cs, vp, P(WrapContext), u32, P(vp)]),
    "vmenc_keymgr_unwrap_dek": (S, [vp, vp, P(WrapContext), u32, P(vp)]),
    "vmenc_keymgr_revoke_kek": (S, [vp, cs, cs, u32]),
    "vmenc_keymgr_destroy_kek": (S, [vp, cs, cs, u32]),
    "vmenc_keymgr_forget": (S, [vp, cs, cs]),
    "vmenc_keymgr_check_health": (S, [vp, cs, u32, P(sz)]),
    "vmenc_keymgr_kek_check_value": (S, [vp, cs, cs, vp, sz]),
    "vmenc_keymgr_pin_check_value": (S, [vp, cs, cs, vp, sz]),
    "vmenc_keymgr_get_stats": (S, [vp, P(KeymgrStats)]),
    # policy
    "vmenc_policy_privilege_name": (cs, [c_int]),
    "vmenc_policy_privilege_from_name": (S, [cs, P(c_int)]),
    "vmenc_policy_privilege_count": (sz, []),
    "vmenc_policy_op_name": (cs, [c_int]),
    "vmenc_host_crypto_state_name": (cs, [c_int]),
    "vmenc_policy_new": (S, [cs, P(vp)]),
    "vmenc_policy_free": (None, [vp]),
    "vmenc_policy_add_role": (S, [vp, cs, P(c_int), sz]),
    "vmenc_policy_add_user": (S, [vp, cs]),
    "vmenc_policy_add_group": (S, [vp, cs]),
    "vmenc_policy_add_member": (S, [vp, cs, cs]),
    "vmenc_policy_add_object": (S, [vp, cs, c_int, cs]),
    "vmenc_policy_set_vm_state": (S, [vp, cs, cs, c_int]),
    "vmenc_policy_grant": (S, [vp, cs, cs, cs, c_int]),
    "vmenc_policy_revoke": (S, [vp, cs, cs]),
    "vmenc_policy_set_host_state": (S, [vp, cs, c_int]),
    "vmenc_policy_get_host_state": (S, [vp, cs, P(c_int)]),
    "vmenc_policy_set_storage_policy": (S, [vp, P(StoragePolicySpec)]),
    "vmenc_policy_check": (S, [vp, cs, P(PolicyRequest), P(PolicyDecision)]),
    "vmenc_policy_has_privilege": (S, [vp, cs, cs, c_int, P(c_int)]),
    "vmenc_policy_enable_host_encryption": (S, [vp, cs, cs, P(PolicyDecision)]),
    "vmenc_policy_load_json": (S, [vp, sz, P(PolicyError), P(vp)]),
    "vmenc_policy_reload_json": (S, [vp, vp, sz, P(PolicyError)]),
    "vmenc_policy_save_json": (S, [vp, P(vp), P(sz)]),
    "vmenc_policy_buffer_free": (None, [vp]),
    "vmenc_policy_edit_op_name": (cs, [c_int]),
    "vmenc_policy_edit_as": (S, [vp, cs, P(PolicyEdit), P(PolicyDecision)]),
    # audit
    "vmenc_audit_outcome_name": (cs, [c_int]),
    "vmenc_audit_defect_name": (cs, [c_int]),
    "vmenc_audit_event_to_json": (S, [P(AuditEvent), vp, sz, P(sz)]),
    "vmenc_audit_log_open": (S, [P(AuditLogOptions), P(vp)]),
    "vmenc_audit_log_append": (S, [vp, P(AuditEvent), P(u64)]),
    "vmenc_audit_log_sync": (S, [vp]),
    "vmenc_audit_log_rotate": (S, [vp, cs]),
    "vmenc_audit_log_position": (S, [vp, P(u64), vp]),
    "vmenc_audit_log_get_stats": (S, [vp, P(AuditLogStats)]),
    "vmenc_audit_log_free": (None, [vp]),
    "vmenc_audit_log_file_tail": (S, [vp, sz, cs, P(u64), vp]),
    "vmenc_audit_log_file_chain_id": (S, [vp, sz, cs, vp]),
    "vmenc_audit_new": (S, [P(vp)]),
    "vmenc_audit_add_callback": (S, [vp, AUDIT_CALLBACK, vp]),
    "vmenc_audit_add_log": (S, [vp, vp]),
    "vmenc_audit_emit": (S, [vp, P(AuditEvent)]),
    "vmenc_audit_free": (None, [vp]),
    "vmenc_audit_verify_files": (S, [P(AuditVerifyOptions), P(c_char_p), sz, P(AuditVerifyResult)]),
    "vmenc_audit_verify_buffer": (S, [P(AuditVerifyOptions), vp, sz, P(AuditVerifyResult)]),
    # vm
    "vmenc_host_new": (S, [P(HostOptions), P(vp)]),
    "vmenc_host_free": (None, [vp]),
    "vmenc_host_id": (cs, [vp]),
    "vmenc_vm_create": (S, [vp, P(VMCreateOptions), P(vp)]),
    "vmenc_vm_open": (S, [vp, cs, cs, P(vp)]),
    "vmenc_vm_register": (S, [vp, cs, cs, cs, cs, P(vp)]),
    "vmenc_vm_unlock": (S, [vp, cs]),
    "vmenc_vm_free": (None, [vp]),
    "vmenc_vm_get_info": (S, [vp, P(VMInfo)]),
    "vmenc_vm_get_disk_info": (S, [vp, u32, P(DiskInfo)]),
    "vmenc_vm_get_missing_key": (S, [vp, u32, vp, sz, vp, sz, P(c_int)]),
    "vmenc_vm_home_dir": (cs, [vp]),
    "vmenc_vm_name": (cs, [vp]),
    "vmenc_vm_uuid": (cs, [vp]),
    "vmenc_vm_add_disk": (S, [vp, cs, P(DiskCreateOptions), vp, sz]),
    "vmenc_vm_remove_disk": (S, [vp, cs, cs, u32]),
    "vmenc_vm_rekey_shallow": (S, [vp, cs, cs, cs]),
    "vmenc_vm_apply_storage_policy_ex": (S, [vp, cs, cs, P(ApplyOptions)]),
    "vmenc_vm_rekey_deep": (S, [vp, cs, P(ApplyOptions)]),
    "vmenc_vm_resume": (S, [vp, cs, P(ApplyOptions)]),
    "vmenc_vm_clone": (S, [vp, P(VMCloneOptions), P(vp)]),
    "vmenc_disk_open": (S, [vp, cs, cs, u32, P(vp)]),
    "vmenc_disk_pread": (S, [vp, u64, sz, vp]),
    "vmenc_disk_pwrite": (S, [vp, u64, vp, sz]),
    "vmenc_disk_flush": (S, [vp]),
    "vmenc_disk_get_size": (S, [vp, P(u64)]),
    "vmenc_disk_get_sector_size": (S, [vp, P(u32)]),
    "vmenc_disk_is_encrypted": (S, [vp, P(c_int)]),
    "vmenc_disk_close": (S, [vp]),
    "vmenc_disk_convert_begin": (S, [vp, cs, c_int, P(ConvertOptions)]),
    "vmenc_disk_convert_step": (S, [vp, u64, P(ConvertProgress)]),
    "vmenc_disk_convert_rollback": (S, [vp, cs]),
    "vmenc_disk_convert_get_progress": (S, [vp, P(ConvertProgress)]),
    "vmenc_vm_file_open": (S, [vp, cs, c_int, u32, u32, P(vp)]),
    "vmenc_vm_file_pread": (S, [vp, u64, sz, vp, P(sz)]),
    "vmenc_vm_file_pwrite": (S, [vp, u64, vp, sz]),
    "vmenc_vm_file_get_size": (S, [vp, P(u64)]),
    "vmenc_vm_file_flush": (S, [vp]),
    "vmenc_vm_file_close": (S, [vp]),
    "vmenc_vm_config_set": (S, [vp, cs, cs, cs, u32]),
    "vmenc_vm_config_get": (S, [vp, cs, cs, vp, sz, P(sz)]),
    # workspace
    "vmenc_workspace_create": (S, [cs, P(WorkspaceCreateOptions), P(WorkspaceError)]),
    "vmenc_workspace_open": (S, [cs, P(WorkspaceOpenOptions), P(WorkspaceError), P(vp)]),
    "vmenc_workspace_free": (None, [vp]),
    "vmenc_workspace_host": (vp, [vp]),
    "vmenc_workspace_policy": (vp, [vp]),
    "vmenc_workspace_keymgr": (vp, [vp]),
    "vmenc_workspace_audit": (vp, [vp]),
    "vmenc_workspace_dir": (cs, [vp]),
    "vmenc_workspace_datastore_dir": (cs, [vp]),
    "vmenc_workspace_folder": (cs, [vp]),
    "vmenc_workspace_id": (cs, [vp]),
    "vmenc_workspace_audit_log_path": (cs, [vp]),
    "vmenc_workspace_vm_path": (S, [vp, cs, vp, sz]),
    "vmenc_workspace_open_vm": (S, [vp, cs, cs, P(vp)]),
    "vmenc_workspace_foreach_vm": (S, [vp, WORKSPACE_VM_FN, vp]),
    "vmenc_workspace_save_policy": (S, [vp]),
    "vmenc_workspace_policy_edit": (S, [vp, cs, P(PolicyEdit), P(PolicyDecision)]),
    "vmenc_workspace_policy_show": (S, [vp, cs, P(vp), P(sz), P(PolicyDecision)]),
    "vmenc_workspace_audit_read": (S, [vp, cs, cs, P(PolicyDecision)]),
    "vmenc_workspace_reseal_policy": (S, [cs, P(WorkspaceOpenOptions), cs, P(WorkspaceError),
                                          P(WorkspaceResealResult)]),
    "vmenc_workspace_authorize": (S, [vp, cs, P(PolicyRequest), cs, cs, P(PolicyDecision)]),
    "vmenc_workspace_audit_result": (S, [vp, cs, cs, cs, cs, cs, c_int, cs]),
    "vmenc_workspace_add_kms": (S, [vp, cs, P(WorkspaceKMSSpec)]),
    "vmenc_workspace_remove_kms": (S, [vp, cs, cs]),
    "vmenc_workspace_kms_backup": (S, [vp, cs, cs, cs, vp, sz]),
    "vmenc_policy_plan_storage_policy": (S, [vp, cs, P(VMCryptoState), P(PolicyAction), sz, P(sz)]),
    "vmenc_workspace_num_kms": (sz, [vp]),
    "vmenc_workspace_get_kms_info": (S, [vp, sz, P(WorkspaceKMSInfo)]),
    "vmenc_workspace_kms_endpoint": (S, [vp, sz, sz, vp, sz]),
    "vmenc_workspace_create_vm": (S, [vp, cs, P(WorkspaceVMSpec), P(WorkspaceError), P(vp)]),
    "vmenc_workspace_delete_vm": (S, [vp, cs, cs, u32, P(WorkspaceDeleteResult)]),
    "vmenc_workspace_unregister_vm": (S, [vp, cs, cs]),
}

_missing = []
for _name, (_res, _args) in _PROTOS.items():
    try:
        _f = getattr(lib, _name)
    except AttributeError:
        _missing.append(_name)
        continue
    _f.restype = _res
    _f.argtypes = _args
if _missing:
    raise LibraryError(f"{lib._name} (libvmenc {VERSION}) lacks symbols this binding needs: "
                       + ", ".join(_missing))
del _name, _res, _args, _missing

if lib.vmenc_init() != 0:
    raise LibraryError("vmenc_init() failed: libsodium could not be initialised")


def enc(s) -> bytes | None:
    """str -> NUL-free UTF-8 bytes for a C string argument (None stays None)."""
    if s is None:
        return None
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    if b"\0" in b:
        raise ValueError("string contains a NUL byte")
    return b


def dec(b) -> str:
    return b.decode("utf-8", "replace") if b else ""


def inbuf(data):
    """Bytes-like -> (argument for a void* parameter, length), without a copy
    for bytes and writable buffers (so a caller's bytearray holding a secret
    is the only copy, which the caller can wipe)."""
    if isinstance(data, bytes):
        return data, len(data)
    mv = memoryview(data)
    if not mv.c_contiguous:
        raise ValueError("buffer must be C-contiguous")
    n = mv.nbytes
    if mv.readonly:
        return bytes(mv), n
    if n == 0:
        return None, 0
    return (c_char * n).from_buffer(mv.cast("B")), n


def outbuf(buf):
    """A writable buffer (bytearray, memoryview, array...) -> (ctypes view, length)."""
    mv = memoryview(buf)
    if mv.readonly or not mv.c_contiguous:
        raise ValueError("output buffer must be writable and C-contiguous")
    n = mv.nbytes
    return ((c_char * n).from_buffer(mv.cast("B")) if n else None), n


def addr(p) -> int | None:
    """Address of what inbuf()/outbuf() returned, for a void* struct field.
    The caller keeps |p| alive while the struct is in use."""
    if p is None:
        return None
    if isinstance(p, bytes):
        return ctypes.cast(ctypes.c_char_p(p), c_void_p).value
    return ctypes.addressof(p)
