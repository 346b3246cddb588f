// Code generated from include/vmenc/common.h; DO NOT EDIT.

package vmenc

// Status values of the C library (vmenc_status). Stable forever once released.
const (
	StatusOK                Status = 0    // VMENC_OK
	StatusInvalidArg        Status = -100 // VMENC_E_INVALID_ARG
	StatusBufferTooSmall    Status = -101 // VMENC_E_BUFFER_TOO_SMALL
	StatusUnsupported       Status = -102 // VMENC_E_UNSUPPORTED
	StatusNotInitialized    Status = -103 // VMENC_E_NOT_INITIALIZED
	StatusUnimplemented     Status = -104 // VMENC_E_UNIMPLEMENTED
	StatusBadState          Status = -105 // VMENC_E_BAD_STATE
	StatusCPUUnsupported    Status = -106 // VMENC_E_CPU_UNSUPPORTED
	StatusWeakKey           Status = -107 // VMENC_E_WEAK_KEY
	StatusBadSectorSize     Status = -108 // VMENC_E_BAD_SECTOR_SIZE
	StatusBadLength         Status = -109 // VMENC_E_BAD_LENGTH
	StatusUnknownImpl       Status = -110 // VMENC_E_UNKNOWN_IMPL
	StatusABIVersion        Status = -111 // VMENC_E_ABI_VERSION
	StatusParse             Status = -200 // VMENC_E_PARSE
	StatusTruncated         Status = -201 // VMENC_E_TRUNCATED
	StatusBadVersion        Status = -202 // VMENC_E_BAD_VERSION
	StatusTooLarge          Status = -203 // VMENC_E_TOO_LARGE
	StatusTrailingData      Status = -204 // VMENC_E_TRAILING_DATA
	StatusBadEncoding       Status = -205 // VMENC_E_BAD_ENCODING
	StatusDepthLimit        Status = -206 // VMENC_E_DEPTH_LIMIT
	StatusBadAlgorithm      Status = -207 // VMENC_E_BAD_ALGORITHM
	StatusBadMagic          Status = -208 // VMENC_E_BAD_MAGIC
	StatusBadPath           Status = -209 // VMENC_E_BAD_PATH
	StatusAuth              Status = -300 // VMENC_E_AUTH
	StatusCrypto            Status = -301 // VMENC_E_CRYPTO
	StatusRandom            Status = -302 // VMENC_E_RANDOM
	StatusWrongPassphrase   Status = -303 // VMENC_E_WRONG_PASSPHRASE
	StatusKeyMismatch       Status = -304 // VMENC_E_KEY_MISMATCH
	StatusContextMismatch   Status = -305 // VMENC_E_CONTEXT_MISMATCH
	StatusSelftest          Status = -306 // VMENC_E_SELFTEST
	StatusRoundtrip         Status = -307 // VMENC_E_ROUNDTRIP
	StatusKMS               Status = -400 // VMENC_E_KMS
	StatusKMSUnavailable    Status = -401 // VMENC_E_KMS_UNAVAILABLE
	StatusKMSTimeout        Status = -402 // VMENC_E_KMS_TIMEOUT
	StatusKMSTLS            Status = -403 // VMENC_E_KMS_TLS
	StatusKMSCertVerify     Status = -404 // VMENC_E_KMS_CERT_VERIFY
	StatusKMSNameMismatch   Status = -405 // VMENC_E_KMS_NAME_MISMATCH
	StatusKMSAuth           Status = -406 // VMENC_E_KMS_AUTH
	StatusKeyNotFound       Status = -407 // VMENC_E_KEY_NOT_FOUND
	StatusKMSProtocol       Status = -408 // VMENC_E_KMS_PROTOCOL
	StatusKMSRefused        Status = -409 // VMENC_E_KMS_REFUSED
	StatusKeyState          Status = -410 // VMENC_E_KEY_STATE
	StatusTokenNotFound     Status = -411 // VMENC_E_TOKEN_NOT_FOUND
	StatusProviderExists    Status = -412 // VMENC_E_PROVIDER_EXISTS
	StatusNoSuchProvider    Status = -413 // VMENC_E_NO_SUCH_PROVIDER
	StatusKMSPermission     Status = -414 // VMENC_E_KMS_PERMISSION
	StatusPINLocked         Status = -415 // VMENC_E_PIN_LOCKED
	StatusKMSWrongKey       Status = -416 // VMENC_E_KMS_WRONG_KEY
	StatusVMLocked          Status = -417 // VMENC_E_VM_LOCKED
	StatusDenied            Status = -500 // VMENC_E_DENIED
	StatusHostMode          Status = -501 // VMENC_E_HOST_MODE
	StatusPolicyInvalid     Status = -502 // VMENC_E_POLICY_INVALID
	StatusNotFound          Status = -503 // VMENC_E_NOT_FOUND
	StatusExists            Status = -504 // VMENC_E_EXISTS
	StatusCycle             Status = -505 // VMENC_E_CYCLE
	StatusIllegalTransition Status = -506 // VMENC_E_ILLEGAL_TRANSITION
	StatusAuditTampered     Status = -600 // VMENC_E_AUDIT_TAMPERED
	StatusAuditTruncated    Status = -601 // VMENC_E_AUDIT_TRUNCATED
	StatusAuditSink         Status = -602 // VMENC_E_AUDIT_SINK
	StatusNoMem             Status = -700 // VMENC_E_NOMEM
	StatusIO                Status = -701 // VMENC_E_IO
	StatusLocked            Status = -702 // VMENC_E_LOCKED
	StatusLimit             Status = -703 // VMENC_E_LIMIT
	StatusInterrupted       Status = -704 // VMENC_E_INTERRUPTED
	StatusNoSpace           Status = -705 // VMENC_E_NO_SPACE
	StatusConflict          Status = -706 // VMENC_E_CONFLICT
	StatusCtlUnavailable    Status = -707 // VMENC_E_CONTROL_UNAVAILABLE
	StatusOutcomeUnknown    Status = -708 // VMENC_E_OUTCOME_UNKNOWN
	StatusLeaseExpired      Status = -709 // VMENC_E_LEASE_EXPIRED
	StatusInternal          Status = -900 // VMENC_E_INTERNAL
)
