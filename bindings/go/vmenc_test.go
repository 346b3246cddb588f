package vmenc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestVersionAndErrors(t *testing.T) {
	must(t, Init())
	if Version() != "0.5.0" {
		t.Fatalf("version %s", Version())
	}
	var err error = &Error{Status: StatusAuth, Op: "x"}
	if !errors.Is(err, ErrAuth) || !errors.Is(err, ErrCrypto) || errors.Is(err, ErrKMS) {
		t.Fatal("errors.Is on categories")
	}
	if !errors.Is(err, StatusAuth) || errors.Is(err, StatusKeyNotFound) {
		t.Fatal("errors.Is on Status")
	}
	var ve *Error
	if !errors.As(fmt.Errorf("wrapped: %w", err), &ve) || ve.Status.Name() != "VMENC_E_AUTH" {
		t.Fatal("errors.As")
	}
	if !errors.Is(&Error{Status: StatusKMSTimeout}, ErrKMSUnavailable) || !errors.Is(&Error{Status: StatusDenied}, ErrPolicy) {
		t.Fatal("finer sentinels")
	}
}

// xtsRef builds bindings/testdata/xts_ref (OpenSSL, and libvmenc from C via pkg-config).
func xtsRef(t *testing.T) string {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler")
	}
	exe := filepath.Join(t.TempDir(), "xts_ref")
	flags, err := exec.Command("pkg-config", "--cflags", "--libs", "vmenc").Output()
	must(t, err)
	libdir, _ := exec.Command("pkg-config", "--variable=libdir", "vmenc").Output()
	args := []string{"../testdata/xts_ref.c", "-o", exe, "-DWITH_VMENC", "-lcrypto", "-Wl,-rpath," + strings.TrimSpace(string(libdir))}
	args = append(args, strings.Fields(string(flags))...)
	if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		t.Fatalf("build xts_ref: %v\n%s", err, out)
	}
	return exe
}

func TestXTSMatchesCLibraryAndOpenSSL(t *testing.T) {
	exe := xtsRef(t)
	key := make([]byte, 64)
	for i := range key {
		key[i] = byte(i*7 + 3)
	}
	for _, impl := range []string{"", "portable", "aesni"} {
		if impl != "" {
			if ok, _ := XTSImplAvailable(impl); !ok {
				continue
			}
		}
		for _, ss := range []uint32{512, 4096} {
			data := make([]byte, 4*ss)
			for i := range data {
				data[i] = byte(i * 13)
			}
			first := uint64(1<<40 + 1000)
			x, err := NewXTS(key, ss, impl)
			must(t, err)
			ct := make([]byte, len(data))
			must(t, x.Encrypt(first, ct, data))
			pt := make([]byte, len(data))
			must(t, x.Decrypt(first, pt, ct))
			must(t, x.Close())
			if !bytes.Equal(pt, data) {
				t.Fatal("roundtrip")
			}
			for _, ref := range []string{"openssl", "vmenc"} {
				cmd := exec.Command(exe, ref, fmt.Sprintf("%x", key), strconv.FormatUint(first, 10), strconv.Itoa(int(ss)))
				cmd.Stdin = bytes.NewReader(data)
				out, err := cmd.Output()
				must(t, err)
				if !bytes.Equal(out, ct) {
					t.Fatalf("impl %q sector %d: binding differs from %s", impl, ss, ref)
				}
			}
		}
	}
}

func TestXTSErrorsAndConcurrency(t *testing.T) {
	_, err := NewXTS(bytes.Repeat([]byte{1}, 64), 512, "")
	if !errors.Is(err, StatusWeakKey) || !errors.Is(err, ErrUsage) {
		t.Fatalf("weak key: %v", err)
	}
	key, _ := RandomBytes(64)
	x, err := NewXTS(key, 512, "")
	must(t, err)
	Wipe(key)
	if err := x.Encrypt(0, make([]byte, 100), make([]byte, 100)); !errors.Is(err, StatusBadLength) {
		t.Fatalf("bad length: %v", err)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	want := make([]byte, len(data))
	must(t, x.Encrypt(9, want, data))
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := make([]byte, len(data))
			for i := 0; i < 50; i++ {
				if err := x.Encrypt(9, out, data); err != nil || !bytes.Equal(out, want) {
					t.Error("concurrent encrypt")
					return
				}
			}
		}()
	}
	wg.Wait()
	must(t, x.Close())
	must(t, x.Close())
	if err := x.Encrypt(0, data, data); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed: %v", err)
	}
}

func TestKeysAndRecords(t *testing.T) {
	dek, err := GenerateDEK()
	must(t, err)
	defer dek.Close()
	kek, err := GenerateKEK()
	must(t, err)
	defer kek.Close()
	ctx := WrapContext{VMUUID: "u1", DiskID: "scsi0:0", Purpose: "disk"}
	wk, err := dek.Wrap(kek, WrapAES256GCM, "kp", "kek-1", ctx)
	must(t, err)
	b, err := wk.Bytes()
	must(t, err)
	wk2, err := ParseWrappedKey(b)
	must(t, err)
	text, _ := wk2.Text()
	wk3, err := ParseWrappedKeyText(text)
	must(t, err)
	got, err := wk3.Unwrap(kek, ctx)
	must(t, err)
	if eq, _ := got.Equal(dek); !eq || wk3.KEKID() != "kek-1" {
		t.Fatal("unwrap")
	}
	if _, err := wk3.Unwrap(kek, WrapContext{VMUUID: "u2"}); !errors.Is(err, ErrAuth) {
		t.Fatalf("wrong context: %v", err)
	}
	b[len(b)-1] ^= 1
	wk4, _ := ParseWrappedKey(b)
	if _, err := wk4.Unwrap(kek, ctx); !errors.Is(err, ErrAuth) {
		t.Fatalf("tampered: %v", err)
	}
	if _, err := ParseWrappedKey([]byte("junk")); !errors.Is(err, ErrParse) {
		t.Fatalf("parse: %v", err)
	}
	if s := fmt.Sprintf("%v %#v %v", dek, kek, FileEndpoint{Passphrase: []byte("hunter2")}); strings.Contains(s, "hunter2") || !strings.Contains(s, "secure memory") {
		t.Fatalf("String leaks: %s", s)
	}
}

type env struct {
	dir    string
	mgr    *KeyManager
	policy *Policy
	log    *AuditLog
	audit  *Audit
	host   *Host
	key    []byte
}

const alias = "native-kp"
const encPolicy = "VM Encryption Policy"

func newEnv(t *testing.T) *env {
	e := &env{dir: t.TempDir()}
	var err error
	e.mgr, err = NewKeyManager(nil)
	must(t, err)
	must(t, e.mgr.AddCluster(alias, []Endpoint{FileEndpoint{Path: filepath.Join(e.dir, "ks.vks"), Passphrase: []byte("pw"), Create: true, KDFOps: 1, KDFMemKiB: 8}}, nil))
	e.policy, err = NewPolicy("vcenter")
	must(t, err)
	p := e.policy
	must(t, p.AddObject("dc1", ObjectDatacenter, "vcenter"))
	must(t, p.AddObject("esx01", ObjectHost, "dc1"))
	must(t, p.AddObject("vms", ObjectFolder, "dc1"))
	must(t, p.AddUser("alice"))
	must(t, p.AddUser("bob"))
	must(t, p.Grant("alice", "vcenter", RoleAdmin, true))
	must(t, p.Grant("bob", "vcenter", RoleNoCryptoAdmin, true))
	must(t, p.SetStoragePolicy(StoragePolicy{Name: encPolicy, Encrypt: true, FileClasses: FileVMHome | FileDisks, KeyProvider: alias, Migration: 2}))
	e.key, _ = RandomBytes(32)
	e.log, err = OpenAuditLog(AuditLogOptions{Path: filepath.Join(e.dir, "audit.log"), Key: e.key, NoSync: true})
	must(t, err)
	e.audit, err = NewAudit()
	must(t, err)
	must(t, e.audit.AddLog(e.log))
	e.host, err = NewHost(HostOptions{HostID: "esx01", KeyManager: e.mgr, Policy: e.policy, Audit: e.audit, NoSync: true})
	must(t, err)
	// Close everything at once, in the "wrong" order: borrowers keep parents alive.
	t.Cleanup(func() {
		for _, c := range []io.Closer{e.mgr, e.policy, e.log, e.audit, e.host} {
			c.Close()
		}
	})
	return e
}

func TestKeyManagerFileProvider(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := e.mgr.CreateKEK(ctx, alias, "")
	must(t, err)
	dek, _ := GenerateDEK()
	wctx := WrapContext{VMUUID: "u", Purpose: "vm-home"}
	wk, err := e.mgr.WrapDEK(ctx, alias, id, dek, wctx)
	must(t, err)
	must(t, e.mgr.Forget("", ""))
	got, err := e.mgr.UnwrapDEK(ctx, wk, wctx)
	must(t, err)
	if eq, _ := got.Equal(dek); !eq {
		t.Fatal("unwrap")
	}
	if _, err := e.mgr.GetKEK(ctx, alias, "00000000-0000-4000-8000-000000000000"); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("not found: %v", err)
	}
	if _, err := e.mgr.CreateKEK(ctx, "nope", ""); !errors.Is(err, StatusNoSuchProvider) {
		t.Fatalf("no such provider: %v", err)
	}
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	if _, err := e.mgr.GetKEK(expired, alias, id); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	st, err := e.mgr.Stats()
	must(t, err)
	if st.Misses == 0 {
		t.Fatal("stats")
	}
}

func TestPolicyAndAudit(t *testing.T) {
	e := newEnv(t)
	must(t, e.policy.AddObject("vm9", ObjectVM, "vms"))
	d, err := e.policy.Check("bob", Request{Op: OpEncryptVM, VM: "vm9"})
	must(t, err)
	if d.Allowed || !errors.Is(d.Err(), ErrDenied) || !strings.HasPrefix(d.MissingPrivilege, "Cryptographer.") {
		t.Fatalf("decision %+v", d)
	}
	if d, _ := e.policy.Check("alice", Request{Op: OpEncryptVM, VM: "vm9"}); !d.Allowed {
		t.Fatal("alice")
	}
	doc, err := e.policy.JSON()
	must(t, err)
	p2, err := LoadPolicyJSON(doc)
	must(t, err)
	doc2, _ := p2.JSON()
	if !bytes.Equal(doc, doc2) {
		t.Fatal("json round trip")
	}
	p2.Close()
	if _, err := LoadPolicyJSON([]byte(`{"version":1,"bogus":1}`)); err == nil || !strings.Contains(err.Error(), "$") {
		t.Fatalf("bad doc: %v", err)
	}
	seq, err := e.log.Append(Event{Principal: "alice", Operation: "test.op", KeyIDs: []string{"k1"}})
	must(t, err)
	must(t, e.audit.Emit(Event{Principal: "bob", Operation: "test.denied", Outcome: OutcomeDenied, Status: StatusDenied}))
	res, err := VerifyAuditFiles(e.key, []string{filepath.Join(e.dir, "audit.log")}, seq+1)
	must(t, err)
	if res.NumRecords != seq+1 {
		t.Fatalf("verify %+v", res)
	}
	res, err = VerifyAuditFiles(e.key, []string{filepath.Join(e.dir, "audit.log")}, seq+5)
	if !errors.Is(err, ErrAudit) || res.Defect != DefectTruncated {
		t.Fatalf("truncated: %v %v", err, res.Defect)
	}
}

func TestVMDiskEndToEnd(t *testing.T) {
	e := newEnv(t)
	home := filepath.Join(e.dir, "vm01")
	vm, err := e.host.CreateVM(VMCreateOptions{Principal: "alice", HomeDir: home, Name: "vm01", Folder: "vms", StoragePolicy: encPolicy})
	must(t, err)
	id, err := vm.AddDisk("alice", 4<<20, 4096)
	must(t, err)
	disks, err := vm.Disks()
	must(t, err)
	if len(disks) != 1 || disks[0].State != DiskEncrypted {
		t.Fatalf("disks %+v", disks)
	}
	d, err := vm.OpenDisk("alice", id, 0)
	must(t, err)
	pattern := bytes.Repeat([]byte("guest data 0123"), 70000)[:1<<20]
	if _, err := d.WriteAt(pattern, 1<<20); err != nil {
		t.Fatal(err)
	}
	// io.SectionReader over the io.ReaderAt
	got, err := io.ReadAll(io.NewSectionReader(d, 1<<20, 1<<20))
	must(t, err)
	if !bytes.Equal(got, pattern) {
		t.Fatal("read back")
	}
	buf := make([]byte, 10)
	if n, err := d.ReadAt(buf, (4<<20)-4); n != 4 || err != io.EOF {
		t.Fatalf("ReadAt at end: %d %v", n, err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			blob := bytes.Repeat([]byte{byte(g)}, 65536)
			off := int64(2<<20 + g*65536)
			if _, err := d.WriteAt(blob, off); err != nil {
				t.Error(err)
			}
			back := make([]byte, 65536)
			if _, err := d.ReadAt(back, off); err != nil || !bytes.Equal(back, blob) {
				t.Error("concurrent I/O")
			}
		}(g)
	}
	wg.Wait()
	if _, err := vm.OpenDisk("bob", id, DiskExport); !errors.Is(err, ErrDenied) {
		t.Fatalf("export by bob: %v", err)
	}
	// Closing the VM and host first is safe: the disk keeps them alive.
	must(t, vm.Close())
	must(t, e.host.Close())
	must(t, d.Close())
	raw, err := os.ReadFile(filepath.Join(home, strings.Replace(disks[0].FileName, ".vmdk", "-flat.vmdk", 1)))
	must(t, err)
	if bytes.Contains(raw, pattern[:4096]) {
		t.Fatal("plaintext on the datastore")
	}
}

func TestConversion(t *testing.T) {
	e := newEnv(t)
	vm, err := e.host.CreateVM(VMCreateOptions{Principal: "alice", HomeDir: filepath.Join(e.dir, "vm02"), Name: "vm02", Folder: "vms"})
	must(t, err)
	defer vm.Close()
	id, err := vm.AddDisk("alice", 4<<20, 512)
	must(t, err)
	data, _ := RandomBytes(4 << 20)
	d, err := vm.OpenDisk("alice", id, 0)
	must(t, err)
	_, err = d.WriteAt(data, 0)
	must(t, err)
	must(t, d.Close())
	if err := vm.ApplyStoragePolicy(context.Background(), "bob", encPolicy, 1<<20); !errors.Is(err, ErrDenied) {
		t.Fatalf("bob: %v", err)
	}
	must(t, vm.ApplyStoragePolicy(context.Background(), "alice", encPolicy, 1<<20))
	d, err = vm.OpenDisk("alice", id, 0)
	must(t, err)
	defer d.Close()
	if enc, _ := d.Encrypted(); !enc {
		t.Fatal("not encrypted")
	}
	must(t, d.ConvertBegin("alice", ConvertRekey, 1<<20))
	for {
		p, err := d.ConvertStep(1 << 20)
		must(t, err)
		if p.Done {
			break
		}
	}
	got := make([]byte, len(data))
	_, err = d.ReadAt(got, 0)
	must(t, err)
	if !bytes.Equal(got, data) {
		t.Fatal("data after conversions")
	}
}

func TestWorkspace(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ws")
	pw := []byte("workspace passphrase")
	must(t, CreateWorkspace(dir, WorkspaceCreateOptions{Passphrase: pw, Admin: "admin", KDFOps: 1, KDFMemKiB: 8}))
	if _, err := OpenWorkspace(dir, []byte("wrong"), true); !errors.Is(err, ErrAuth) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	ws, err := OpenWorkspace(dir, pw, true)
	must(t, err)
	defer ws.Close()
	host, err := ws.Host()
	must(t, err)
	defer host.Close()
	vm, err := host.CreateVM(VMCreateOptions{Principal: "admin", HomeDir: filepath.Join(ws.DatastoreDir(), "web01"), Name: "web01", Folder: ws.Folder(), StoragePolicy: encPolicy})
	must(t, err)
	defer vm.Close()
	info, err := vm.Info()
	must(t, err)
	if !info.Encrypted || info.Name != "web01" {
		t.Fatalf("info %+v", info)
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestKMIPAgainstPyKMIP(t *testing.T) {
	if os.Getenv("VMENC_SKIP_KMIP") != "" {
		t.Skip("VMENC_SKIP_KMIP is set")
	}
	if exec.Command("/usr/bin/python3", "-c", "import kmip").Run() != nil {
		t.Skip("python3-pykmip not installed")
	}
	dir := t.TempDir()
	port := strconv.Itoa(freePort(t))
	script := "../../tests/kms/pykmip.sh"
	if out, err := exec.Command("bash", script, dir, port).CombinedOutput(); err != nil {
		t.Fatalf("start pykmip: %v\n%s", err, out)
	}
	defer exec.Command("bash", script, "--stop", dir, port).Run()
	certs := filepath.Join(dir, "certs")
	mgr, err := NewKeyManager(nil)
	must(t, err)
	defer mgr.Close()
	must(t, mgr.AddCluster("kmip", []Endpoint{KMIPEndpoint{Address: "127.0.0.1:" + port, CA: filepath.Join(certs, "ca.crt"),
		Cert: filepath.Join(certs, "client.crt"), Key: filepath.Join(certs, "client.key")}}, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	id, err := mgr.CreateKEK(ctx, "kmip", "vmenc-go-test")
	must(t, err)
	dek, _ := GenerateDEK()
	wctx := WrapContext{VMUUID: "go", Purpose: "disk"}
	wk, err := mgr.WrapDEK(ctx, "kmip", id, dek, wctx)
	must(t, err)
	must(t, mgr.Forget("", ""))
	got, err := mgr.UnwrapDEK(ctx, wk, wctx)
	must(t, err)
	if eq, _ := got.Equal(dek); !eq {
		t.Fatal("unwrap through KMIP")
	}
	must(t, mgr.RevokeKEK(ctx, "kmip", id))
	must(t, mgr.Forget("", ""))
	if _, err := mgr.GetKEK(ctx, "kmip", id); !errors.Is(err, StatusKeyState) {
		t.Fatalf("revoked: %v", err)
	}
	must(t, mgr.DestroyKEK(ctx, "kmip", id))
}

// TestXTSIOVEqualsSingleCalls: a vectored call gives the bytes of one
// Encrypt per entry, for every backend this CPU runs, in place and not,
// both ways; bytes outside the entries are untouched.
func TestXTSIOVEqualsSingleCalls(t *testing.T) {
	key, _ := RandomBytes(64)
	for _, impl := range []string{"vaes-avx512", "vaes-avx2", "aesni", "portable"} {
		if ok, _ := XTSImplAvailable(impl); !ok {
			t.Logf("backend %s not available here", impl)
			continue
		}
		x, err := NewXTS(key, 512, impl)
		must(t, err)
		firsts := []uint64{0, 5, 1 << 40, 1<<64 - 1, 77, 3}
		var iov []XTSIOV
		off := 0
		for i, f := range firsts {
			n := 512 * (i%3 + 1)
			iov = append(iov, XTSIOV{FirstSector: f, Off: off + 512, Len: n}) // a gap sector before each
			off += 512 + n
		}
		src, _ := RandomBytes(off)
		want, _ := RandomBytes(off)
		dst := append([]byte(nil), want...)
		for _, v := range iov {
			must(t, x.Encrypt(v.FirstSector, want[v.Off:v.Off+v.Len], src[v.Off:v.Off+v.Len]))
		}
		must(t, x.EncryptIOV(dst, src, iov))
		if !bytes.Equal(dst, want) {
			t.Fatalf("%s: EncryptIOV differs from Encrypt per entry", impl)
		}
		back := append([]byte(nil), dst...)
		must(t, x.DecryptIOV(back, back, iov)) // in place
		for _, v := range iov {
			if !bytes.Equal(back[v.Off:v.Off+v.Len], src[v.Off:v.Off+v.Len]) {
				t.Fatalf("%s: DecryptIOV in place", impl)
			}
		}
		inPlace := append([]byte(nil), src...)
		must(t, x.EncryptIOV(inPlace, inPlace, iov))
		for _, v := range iov {
			if !bytes.Equal(inPlace[v.Off:v.Off+v.Len], want[v.Off:v.Off+v.Len]) {
				t.Fatalf("%s: EncryptIOV in place", impl)
			}
		}
		must(t, x.EncryptIOV(dst, src, nil)) // empty vector: nothing to do
		must(t, x.EncryptIOV(nil, nil, nil))
		must(t, x.Close())
	}
}

// TestXTSIOVLongVector crosses the C helper's on-stack array size.
func TestXTSIOVLongVector(t *testing.T) {
	key, _ := RandomBytes(64)
	x, err := NewXTS(key, 512, "")
	must(t, err)
	defer x.Close()
	const n = 300
	buf, _ := RandomBytes(n * 512)
	want := make([]byte, len(buf))
	iov := make([]XTSIOV, n)
	for i := range iov {
		iov[i] = XTSIOV{FirstSector: uint64(n - i), Off: i * 512, Len: 512}
		must(t, x.Encrypt(uint64(n-i), want[i*512:(i+1)*512], buf[i*512:(i+1)*512]))
	}
	must(t, x.EncryptIOV(buf, buf, iov))
	if !bytes.Equal(buf, want) {
		t.Fatal("long vector")
	}
}

// TestXTSIOVBadEntries: any bad entry fails the call with nothing written.
func TestXTSIOVBadEntries(t *testing.T) {
	key, _ := RandomBytes(64)
	x, err := NewXTS(key, 512, "")
	must(t, err)
	src, _ := RandomBytes(4 * 512)
	dst, _ := RandomBytes(4 * 512)
	orig := append([]byte(nil), dst...)
	good := []XTSIOV{{0, 0, 512}, {1, 512, 1024}, {9, 1536, 512}}
	cases := []struct {
		bad  XTSIOV
		want error
	}{
		{XTSIOV{2, 0, 100}, StatusBadLength},
		{XTSIOV{2, 0, 0}, StatusBadLength},
		{XTSIOV{2, -512, 512}, StatusInvalidArg},
		{XTSIOV{2, 1536, 1024}, StatusInvalidArg},
		{XTSIOV{2, 0, -1}, StatusInvalidArg},
		{XTSIOV{2, 1 << 62, 1 << 62}, StatusInvalidArg},
	}
	for _, c := range cases {
		for pos := 0; pos <= len(good); pos++ {
			iov := append(append(append([]XTSIOV(nil), good[:pos]...), c.bad), good[pos:]...)
			err := x.EncryptIOV(dst, src, iov)
			if !errors.Is(err, c.want) || !errors.Is(err, ErrUsage) {
				t.Fatalf("%+v at %d: %v, want %v", c.bad, pos, err, c.want)
			}
			if !bytes.Equal(dst, orig) {
				t.Fatalf("%+v at %d: dst written", c.bad, pos)
			}
		}
	}
	if err := x.EncryptIOV(dst[:512], src, good); !errors.Is(err, StatusBadLength) {
		t.Fatalf("length mismatch: %v", err)
	}
	if err := x.EncryptIOV(src[16:], src[:len(src)-16], good[:1]); !errors.Is(err, StatusInvalidArg) {
		t.Fatalf("partial overlap: %v", err)
	}
	must(t, x.Close())
	if err := x.EncryptIOV(dst, src, good); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed: %v", err)
	}
}

// Issue 18: bob (NoCryptoAdmin) cannot escalate through the binding.
func TestAuthorizedPolicyEdits(t *testing.T) {
	e := newEnv(t)
	p := e.policy
	d, err := p.GrantAs("bob", "bob", "vcenter", RoleAdmin, true)
	if !errors.Is(err, ErrDenied) || d.Allowed || !strings.HasPrefix(d.MissingPrivilege, "Cryptographer.") || d.MissingObject != "vcenter" {
		t.Fatalf("bob granted himself Admin: %v %+v", err, d)
	}
	if d, _ := p.Check("bob", Request{Op: OpManageKeys}); d.Allowed {
		t.Fatal("bob holds Cryptographer.ManageKeys after a refused grant")
	}
	d, err = p.AddRoleAs("bob", "R", []string{"System.Read", "Cryptographer.Access"})
	if !errors.Is(err, ErrDenied) || d.MissingPrivilege != "Cryptographer.Access" {
		t.Fatalf("bob defined a Cryptographer role: %v %+v", err, d)
	}
	var ve *Error
	if err := p.Grant("bob", "vcenter", "R", true); !errors.As(err, &ve) || ve.Status != StatusNotFound {
		t.Fatalf("the refused role exists: %v", err)
	}
	if _, err := p.AddRoleAs("bob", "R", []string{"System.Read"}); err != nil {
		t.Fatalf("a role of privileges bob holds: %v", err)
	}
	if _, err := p.RevokeAs("bob", "alice", "vcenter"); !errors.Is(err, ErrDenied) {
		t.Fatalf("bob revoked alice: %v", err)
	}
	must(t, p.AddUser("dave"))
	if d, err := p.GrantAs("bob", "dave", "vms", RoleNoCryptoAdmin, true); err != nil || !d.Allowed {
		t.Fatalf("bob grants what he holds: %v %+v", err, d)
	}
	must(t, p.AddGroup("cryptos"))
	must(t, p.Grant("cryptos", "vcenter", RoleAdmin, true))
	if _, err := p.AddMemberAs("bob", "cryptos", "bob"); !errors.Is(err, ErrDenied) {
		t.Fatalf("bob joined a crypto group: %v", err)
	}
	sp := StoragePolicy{Name: "plain"}
	if _, err := p.EditAs("bob", Edit{Op: EditSetStoragePolicy, StoragePolicy: &sp}); !errors.Is(err, ErrDenied) {
		t.Fatalf("bob set a storage policy: %v", err)
	}
	if _, err := p.EditAs("alice", Edit{Op: EditSetStoragePolicy, StoragePolicy: &sp}); err != nil {
		t.Fatalf("alice sets a storage policy: %v", err)
	}
	// policy check uses the inventory's record of the VM's encryption
	must(t, p.AddObject("vm1", ObjectVM, "vms"))
	must(t, p.SetHostState("esx01", HostPrepared))
	must(t, p.SetHostState("esx01", HostSafe))
	must(t, p.SetVMState("vm1", "esx01", true))
	if d, _ := p.Check("bob", Request{Op: OpExportVM, VM: "vm1"}); d.Allowed || d.MissingPrivilege != "Cryptographer.Access" {
		t.Fatalf("export of an encrypted VM without the flag: %+v", d)
	}
}

func TestWorkspacePolicyEditsAudited(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ws")
	pw := []byte("workspace passphrase")
	must(t, CreateWorkspace(dir, WorkspaceCreateOptions{Passphrase: pw, Admin: "alice", KDFOps: 1, KDFMemKiB: 8}))
	ws, err := OpenWorkspace(dir, pw, true)
	must(t, err)
	defer ws.Close()
	p, err := ws.Policy()
	must(t, err)
	defer p.Close()
	must(t, p.AddUser("bob"))
	must(t, p.Grant("bob", "root", RoleNoCryptoAdmin, true))
	must(t, p.AddUser("nobody"))
	d, err := ws.EditPolicy("bob", Edit{Op: EditGrant, Name: "bob", Object: "root", Role: RoleAdmin, Propagate: true})
	if !errors.Is(err, ErrDenied) || !strings.HasPrefix(d.MissingPrivilege, "Cryptographer.") {
		t.Fatalf("bob through the workspace: %v %+v", err, d)
	}
	if _, err := ws.EditPolicy("alice", Edit{Op: EditAddUser, Name: "erin"}); err != nil {
		t.Fatal(err)
	}
	if doc, err := ws.PolicyShow("alice"); err != nil || !bytes.Contains(doc, []byte(`"erin"`)) {
		t.Fatalf("policy show: %v", err)
	}
	if _, err := ws.PolicyShow("nobody"); !errors.Is(err, ErrDenied) {
		t.Fatalf("nobody read the policy: %v", err)
	}
	if err := ws.AuthorizeAuditRead("nobody", "audit.show"); !errors.Is(err, ErrDenied) {
		t.Fatalf("nobody read the audit log: %v", err)
	}
	must(t, ws.AuthorizeAuditRead("bob", "audit.show"))
	log, err := os.ReadFile(filepath.Join(dir, "audit.log"))
	must(t, err)
	found := false
	for _, line := range strings.Split(string(log), "\n") {
		if strings.Contains(line, `"op":"policy.grant"`) && strings.Contains(line, `"principal":"bob"`) &&
			strings.Contains(line, `"outcome":"denied"`) && strings.Contains(line, "Cryptographer.") {
			found = true
		}
	}
	if !found {
		t.Fatal("the denied grant is not in the audit log")
	}
}

// ---- issue 18: a NoCryptoAdmin cannot encrypt, decrypt, open a console,
// download an encrypted VM (disk or any state file) or configure key
// managers, by any sequence of calls through this binding. alice (Admin)
// writes markers into an encrypted VM through the hypervisor's power-on
// path; bob (NoCryptoAdmin on the root) tries every crypto operation, by
// name and then in a seeded random sequence mixed with edits he may make
// (users he creates act too). Non-export opens are the hypervisor's own
// path and, as in vSphere, allowed to whoever may power the VM on.

const ncMark = "ALICE-SECRET-MARKER-"

type ncFile struct {
	class FileClass
	index uint32
	name  string
}

var ncFiles = []ncFile{{FileNVRAM, 0, "NVRAM"}, {FileVMSS, 0, "VMSS"}, {FileVMSN, 1, "VMSN"}, {FileVMEM, 1, "VMEM"}, {FileVSWP, 0, "VSWP"}}

func ncMarker(tag string) []byte { return []byte(ncMark + tag + "-END") }

type ncWorld struct {
	t             *testing.T
	dir           string
	ws            *Workspace
	p             *Policy
	secret, plain *VM
	disk, pdisk   string
	objects       []string
	bobs          []string
	got           [][]byte
	crypto        []string
}

var ncPass = []byte("nocrypto workspace passphrase")

func newNCWorld(t *testing.T) *ncWorld {
	w := &ncWorld{t: t, dir: filepath.Join(t.TempDir(), "ws"), bobs: []string{"bob"}}
	must(t, CreateWorkspace(w.dir, WorkspaceCreateOptions{Passphrase: ncPass, Admin: "alice", KDFOps: 1, KDFMemKiB: 8}))
	var err error
	w.ws, err = OpenWorkspace(w.dir, ncPass, true)
	must(t, err)
	w.p, err = w.ws.Policy()
	must(t, err)
	t.Cleanup(w.close)
	// trusted bootstrap (the unchecked calls)
	must(t, w.p.AddUser("bob"))
	must(t, w.p.Grant("bob", "root", RoleNoCryptoAdmin, true))
	must(t, w.p.AddGroup("cryptos"))
	must(t, w.p.Grant("cryptos", "root", RoleAdmin, true))
	for _, p := range Privileges() {
		if strings.HasPrefix(p, "Cryptographer.") {
			w.crypto = append(w.crypto, p)
		}
	}
	host, err := w.ws.Host()
	must(t, err)
	defer host.Close()
	mk := func(name, sp string, mem uint64) *VM {
		vm, err := host.CreateVM(VMCreateOptions{Principal: "alice", HomeDir: filepath.Join(w.ws.DatastoreDir(), name), Name: name,
			Folder: w.ws.Folder(), StoragePolicy: sp, MemoryBytes: mem})
		must(t, err)
		return vm
	}
	w.secret = mk("secret", encPolicy, 1<<20)
	w.plain = mk("plainvm", "Datastore Default", 0)
	w.disk, err = w.secret.AddDisk("alice", 1<<20, 512)
	must(t, err)
	w.pdisk, err = w.plain.AddDisk("alice", 1<<20, 512)
	must(t, err)
	d, err := w.secret.OpenDisk("alice", w.disk, 0)
	must(t, err)
	_, err = d.WriteAt(ncMarker("disk"), 4096)
	must(t, err)
	must(t, d.Close())
	for _, f := range ncFiles {
		h, err := w.secret.OpenFile("alice", f.class, f.index, FileCreate)
		must(t, err)
		_, err = h.WriteAt(ncMarker(f.name), 512)
		must(t, err)
		must(t, h.Close())
	}
	must(t, w.secret.ConfigSet("alice", "guestinfo.secret", string(ncMarker("config")), true))
	w.objects = []string{"root", "dc", "vms", "secret", "plainvm"}
	if info, _ := w.secret.Info(); !info.Encrypted {
		t.Fatal("the secret VM is not encrypted")
	}
	return w
}

func (w *ncWorld) close() {
	w.secret.Close()
	w.plain.Close()
	w.p.Close()
	w.ws.Close()
}

// denied fails unless err is a policy refusal.
func (w *ncWorld) denied(what string, err error) {
	w.t.Helper()
	if !errors.Is(err, ErrDenied) {
		w.t.Fatalf("%s was not refused: %v", what, err)
	}
}

func (w *ncWorld) pick(rng *rand.Rand, s []string) string { return s[rng.Intn(len(s))] }

type ncAttempt struct {
	name string
	do   func(w *ncWorld, who string, rng *rand.Rand)
}

var ncAttempts = []ncAttempt{
	{"grant_admin_root", func(w *ncWorld, who string, rng *rand.Rand) {
		_, err := w.ws.EditPolicy(who, Edit{Op: EditGrant, Name: w.pick(rng, w.bobs), Object: "root", Role: RoleAdmin, Propagate: true})
		w.denied(who+" grants Admin on the root", err)
	}},
	{"grant_admin_vm", func(w *ncWorld, who string, rng *rand.Rand) {
		_, err := w.p.GrantAs(who, w.pick(rng, w.bobs), w.pick(rng, []string{"secret", "plainvm", "dc"}), RoleAdmin, true)
		w.denied(who+" grants Admin on an object", err)
	}},
	{"crypto_role", func(w *ncWorld, who string, rng *rand.Rand) {
		_, err := w.p.AddRoleAs(who, fmt.Sprintf("R%d", rng.Intn(1000)), []string{"System.Read", w.pick(rng, w.crypto)})
		w.denied(who+" defines a Cryptographer role", err)
	}},
	{"join_admin_group", func(w *ncWorld, who string, rng *rand.Rand) {
		_, err := w.p.AddMemberAs(who, "cryptos", w.pick(rng, w.bobs))
		w.denied(who+" joins the Admin group", err)
	}},
	{"weaken_alice", func(w *ncWorld, who string, rng *rand.Rand) {
		var err error
		if rng.Intn(2) == 0 {
			_, err = w.p.RevokeAs(who, "alice", "root")
		} else {
			_, err = w.p.GrantAs(who, "alice", w.pick(rng, w.objects), w.pick(rng, []string{RoleNoAccess, RoleReadOnly, RoleNoCryptoAdmin}), true)
		}
		w.denied(who+" weakens alice", err)
	}},
	{"storage_policy_def", func(w *ncWorld, who string, rng *rand.Rand) {
		sp := StoragePolicy{Name: fmt.Sprintf("sp%d", rng.Intn(100)), Encrypt: true, FileClasses: FileVMHome | FileDisks, KeyProvider: "native"}
		_, err := w.p.EditAs(who, Edit{Op: EditSetStoragePolicy, StoragePolicy: &sp})
		w.denied(who+" defines an encrypting storage policy", err)
	}},
	{"encrypt", func(w *ncWorld, who string, rng *rand.Rand) {
		w.denied(who+" encrypts", w.plain.ApplyStoragePolicy(context.Background(), who, encPolicy, 0))
	}},
	{"decrypt", func(w *ncWorld, who string, rng *rand.Rand) {
		w.denied(who+" decrypts", w.secret.ApplyStoragePolicy(context.Background(), who, "Datastore Default", 0))
	}},
	{"rekey", func(w *ncWorld, who string, rng *rand.Rand) {
		if rng.Intn(2) == 0 {
			w.denied(who+" rekeys shallow", w.secret.RekeyShallow(context.Background(), who, "", ""))
		} else {
			w.denied(who+" rekeys deep", w.secret.RekeyDeep(context.Background(), who, 0))
		}
	}},
	{"clone", func(w *ncWorld, who string, rng *rand.Rand) {
		n := fmt.Sprintf("c%d", rng.Intn(1000000))
		home := filepath.Join(w.ws.DatastoreDir(), n)
		src, sp := w.secret, ""
		if rng.Intn(2) == 0 {
			src, sp = w.plain, encPolicy
		}
		vm, err := src.Clone(VMCloneOptions{Principal: who, HomeDir: home, Name: n, Folder: w.ws.Folder(), StoragePolicy: sp})
		if err == nil {
			vm.Close()
		}
		w.denied(who+" clones", err)
		if _, err := os.Stat(home); err == nil {
			w.t.Fatalf("a refused clone left %s", home)
		}
	}},
	{"disk_export", func(w *ncWorld, who string, rng *rand.Rand) {
		fl := DiskExport
		if rng.Intn(2) == 0 {
			fl |= DiskReadOnly
		}
		d, err := w.secret.OpenDisk(who, w.disk, fl)
		if err == nil {
			b := make([]byte, 1<<20)
			d.ReadAt(b, 0)
			w.got = append(w.got, b)
			d.Close()
		}
		w.denied(fmt.Sprintf("%s opens the encrypted disk for export (flags %d)", who, fl), err)
	}},
	{"file_export", func(w *ncWorld, who string, rng *rand.Rand) {
		f := ncFiles[rng.Intn(len(ncFiles))]
		fl := FileExport
		if rng.Intn(2) == 0 {
			fl |= FileReadOnly
		}
		h, err := w.secret.OpenFile(who, f.class, f.index, fl)
		if err == nil {
			b := make([]byte, 1<<20)
			n, _ := h.ReadAt(b, 0)
			w.got = append(w.got, b[:n])
			h.Close()
		}
		w.denied(fmt.Sprintf("%s opens %s for export (flags %d)", who, f.name, fl), err)
	}},
	{"console", func(w *ncWorld, who string, rng *rand.Rand) {
		d, err := w.p.Check(who, Request{Op: OpConsole, VM: "secret"})
		must(w.t, err)
		if d.Allowed {
			w.t.Fatalf("%s may open the console: %+v", who, d)
		}
		if held, _ := w.p.HasPrivilege(who, "secret", "VirtualMachine.Interact.ConsoleInteract"); held && d.MissingPrivilege != "Cryptographer.Access" {
			w.t.Fatalf("console refused for the wrong reason: %+v", d)
		}
		v, err := w.secret.ConfigGet(who, "guestinfo.secret")
		w.got = append(w.got, []byte(v))
		w.denied(who+" reads a secret configuration entry", err)
	}},
	{"checks", func(w *ncWorld, who string, rng *rand.Rand) {
		for _, op := range []Op{OpExportVM, OpUploadFiles, OpEncryptVM, OpDecryptVM, OpRekeyDeep, OpManageKeys, OpManageKeyServers, OpManageEncryptionPolicies} {
			if d, err := w.p.Check(who, Request{Op: op, VM: "secret"}); err != nil || d.Allowed {
				w.t.Fatalf("%s: check of op %d: %v %+v", who, op, err, d)
			}
		}
	}},
	{"add_kms", func(w *ncWorld, who string, rng *rand.Rand) {
		n := fmt.Sprintf("kp%d", rng.Intn(1000))
		path := filepath.Join(w.dir, n+".vks")
		w.denied(who+" adds a key provider", w.ws.AddKMS(who, KMSSpec{Alias: n, Type: "file", Endpoints: []string{path}, Create: true}))
		if _, err := os.Stat(path); err == nil {
			w.t.Fatalf("a refused add_kms created %s", path)
		}
	}},
	{"remove_kms", func(w *ncWorld, who string, rng *rand.Rand) {
		w.denied(who+" removes the key provider", w.ws.RemoveKMS(who, "native"))
	}},
	{"create_key", func(w *ncWorld, who string, rng *rand.Rand) {
		_, err := w.ws.CreateKey(context.Background(), who, "native", "")
		w.denied(who+" creates a key", err)
	}},
	{"backup", func(w *ncWorld, who string, rng *rand.Rand) {
		path := filepath.Join(w.dir, fmt.Sprintf("backup%d.vkb", rng.Intn(1000)))
		w.denied(who+" backs up the keystore", w.ws.KMSBackup(who, "native", path, []byte("a long backup passphrase")))
		if _, err := os.Stat(path); err == nil {
			w.t.Fatalf("a refused backup wrote %s", path)
		}
	}},
}

// allowedEdit makes an edit bob may make (errors ignored: not the point).
func (w *ncWorld) allowedEdit(who string, rng *rand.Rand) {
	k := rng.Intn(4)
	if len(w.bobs) < 3 && rng.Intn(2) == 0 {
		k = 0
	}
	switch {
	case k == 0 && len(w.bobs) < 4:
		n := fmt.Sprintf("m%d", len(w.bobs))
		if _, err := w.p.EditAs(who, Edit{Op: EditAddUser, Name: n}); err != nil {
			return
		}
		if _, err := w.p.GrantAs(who, n, w.pick(rng, w.objects), RoleNoCryptoAdmin, true); err == nil {
			w.bobs = append(w.bobs, n)
		}
	case k == 1:
		_, _ = w.p.AddRoleAs(who, fmt.Sprintf("ok%d", rng.Intn(1000)), []string{"System.Read", "VirtualMachine.Interact.PowerOn"})
	case k == 2:
		g := fmt.Sprintf("g%d", rng.Intn(3))
		_, _ = w.p.EditAs(who, Edit{Op: EditAddGroup, Name: g})
		_, _ = w.p.AddMemberAs(who, g, w.pick(rng, w.bobs))
		_, _ = w.p.GrantAs(who, g, w.pick(rng, w.objects), RoleNoCryptoAdmin, true)
	case len(w.bobs) > 1: // never bob's own root permission
		_, _ = w.p.GrantAs(who, w.pick(rng, w.bobs[1:]), w.pick(rng, w.objects), w.pick(rng, []string{RoleNoCryptoAdmin, RoleReadOnly}), true)
	}
}

func (w *ncWorld) invariants() {
	t := w.t
	t.Helper()
	for _, who := range w.bobs {
		for _, obj := range w.objects {
			for _, p := range w.crypto {
				if held, err := w.p.HasPrivilege(who, obj, p); err != nil || held {
					t.Fatalf("%s holds %s on %s (%v)", who, p, obj, err)
				}
			}
		}
	}
	for _, obj := range w.objects {
		for _, p := range Privileges() {
			if held, err := w.p.HasPrivilege("alice", obj, p); err != nil || !held {
				t.Fatalf("alice lost %s on %s (%v)", p, obj, err)
			}
		}
	}
	d, err := w.secret.OpenDisk("alice", w.disk, DiskReadOnly)
	must(t, err)
	b := make([]byte, len(ncMarker("disk")))
	_, err = d.ReadAt(b, 4096)
	must(t, err)
	must(t, d.Close())
	if !bytes.Equal(b, ncMarker("disk")) {
		t.Fatalf("alice's disk reads %q", b)
	}
	for _, f := range ncFiles {
		h, err := w.secret.OpenFile("alice", f.class, f.index, FileReadOnly)
		must(t, err)
		b := make([]byte, len(ncMarker(f.name)))
		_, err = h.ReadAt(b, 512)
		must(t, err)
		must(t, h.Close())
		if !bytes.Equal(b, ncMarker(f.name)) {
			t.Fatalf("alice's %s reads %q", f.name, b)
		}
	}
	if v, err := w.secret.ConfigGet("alice", "guestinfo.secret"); err != nil || v != string(ncMarker("config")) {
		t.Fatalf("alice's secret entry: %q %v", v, err)
	}
	if i, _ := w.secret.Info(); !i.Encrypted {
		t.Fatal("the secret VM was decrypted")
	}
	if i, _ := w.plain.Info(); i.Encrypted {
		t.Fatal("the plain VM was encrypted")
	}
	for _, g := range w.got {
		if bytes.Contains(g, []byte(ncMark)) {
			t.Fatal("bob obtained alice's secret bytes")
		}
	}
	// the refusals are not vacuous: alice may export
	h, err := w.secret.OpenFile("alice", FileNVRAM, 0, FileExport|FileReadOnly)
	must(t, err)
	all := make([]byte, 4096)
	n, _ := h.ReadAt(all, 0)
	must(t, h.Close())
	if !bytes.Contains(all[:n], ncMarker("NVRAM")) {
		t.Fatal("alice's export of NVRAM lacks her marker")
	}
}

func TestNoCryptoEachAttemptRefused(t *testing.T) {
	for _, a := range ncAttempts {
		a := a
		t.Run(a.name, func(t *testing.T) {
			w := newNCWorld(t)
			a.do(w, "bob", rand.New(rand.NewSource(int64(len(a.name)))))
			w.invariants()
		})
	}
}

func TestNoCryptoRandomSequence(t *testing.T) {
	seed := int64(18)
	if s := os.Getenv("VMENC_NOCRYPTO_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		must(t, err)
		seed = v
	}
	w := newNCWorld(t)
	rng := rand.New(rand.NewSource(seed))
	for step := 0; step < 200; step++ {
		who := w.pick(rng, w.bobs)
		if rng.Intn(4) == 0 {
			w.allowedEdit(who, rng)
			continue
		}
		a := ncAttempts[rng.Intn(len(ncAttempts))]
		t.Logf("seed %d step %d: %s %s", seed, step, who, a.name)
		a.do(w, who, rng)
	}
	if len(w.bobs) < 2 {
		t.Fatal("the sequence never acted through a principal bob made")
	}
	w.invariants()
}

func TestNoCryptoReseal(t *testing.T) {
	w := newNCWorld(t)
	w.secret.Close()
	w.plain.Close()
	w.p.Close()
	must(t, w.ws.Close())
	path := filepath.Join(w.dir, "policy.json")
	raw, err := os.ReadFile(path)
	must(t, err)
	lines := bytes.SplitAfter(raw, []byte("\n"))
	for len(lines) > 0 && len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	if !bytes.HasPrefix(lines[len(lines)-1], []byte("#vmenc-seal v1 ")) {
		t.Fatalf("no seal line: %q", lines[len(lines)-1])
	}
	doc := bytes.Replace(bytes.Join(lines[:len(lines)-1], nil), []byte(`{"name": "bob"}`), []byte(`{"name": "bob"}, {"name": "carol"}`), 1)
	must(t, os.WriteFile(path, doc, 0o600))
	if _, err := OpenWorkspace(w.dir, ncPass, true); !errors.Is(err, ErrAuth) {
		t.Fatalf("a hand-edited document opened: %v", err)
	}
	if _, err := ResealPolicy(w.dir, ncPass, "bob", true); !errors.Is(err, ErrDenied) {
		t.Fatalf("bob resealed: %v", err)
	}
	if now, _ := os.ReadFile(path); !bytes.Equal(now, doc) {
		t.Fatal("a refused reseal wrote the document")
	}
	r, err := ResealPolicy(w.dir, ncPass, "alice", true)
	if err != nil || r.WasSealed || len(r.NewSHA256) != 64 || r.Generation == 0 {
		t.Fatalf("alice's reseal: %+v %v", r, err)
	}
	ws, err := OpenWorkspace(w.dir, ncPass, true)
	must(t, err)
	defer ws.Close()
	p, err := ws.Policy()
	must(t, err)
	defer p.Close()
	if held, _ := p.HasPrivilege("carol", "root", "System.Read"); held {
		t.Fatal("carol holds privileges")
	}
	if held, _ := p.HasPrivilege("bob", "root", "Cryptographer.Access"); held {
		t.Fatal("bob holds Cryptographer.Access after the reseal")
	}
	vm, err := ws.OpenVM("alice", "secret")
	must(t, err)
	defer vm.Close()
	h, err := vm.OpenFile("bob", FileVMSS, 0, FileExport|FileReadOnly)
	if err == nil {
		h.Close()
	}
	if !errors.Is(err, ErrDenied) {
		t.Fatalf("bob exported the suspend state after the reseal: %v", err)
	}
}
