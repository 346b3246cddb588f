package vmenc

// lifecycle_test.go - issue 24 through the Go binding: DeleteVM with
// crypto-shredding (a copy of the home made before cannot be opened after),
// context.Context stopping a long conversion resumably, and error text that
// names the operation rather than a C function.

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func newLifecycleWorkspace(t *testing.T) (*Workspace, *Host) {
	dir := filepath.Join(t.TempDir(), "ws")
	pw := []byte("lifecycle passphrase")
	must(t, CreateWorkspace(dir, WorkspaceCreateOptions{Passphrase: pw, Admin: "alice", KDFOps: 1, KDFMemKiB: 8}))
	ws, err := OpenWorkspace(dir, pw, true)
	must(t, err)
	t.Cleanup(func() { ws.Close() })
	host, err := ws.Host()
	must(t, err)
	t.Cleanup(func() { host.Close() })
	return ws, host
}

func TestDeleteVMDestroyKeysShredsABackup(t *testing.T) {
	ws, host := newLifecycleWorkspace(t)
	home := filepath.Join(ws.DatastoreDir(), "shred")
	vm, err := host.CreateVM(VMCreateOptions{Principal: "alice", HomeDir: home, Name: "shred", Folder: ws.Folder(), StoragePolicy: encPolicy})
	must(t, err)
	_, err = vm.AddDisk("alice", 1<<20, 512)
	must(t, err)
	must(t, vm.Close())
	backup := filepath.Join(t.TempDir(), "backup")
	if out, err := exec.Command("cp", "-a", home, backup).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	plan, err := ws.DeleteVM(context.Background(), "alice", "shred", DeleteOptions{DestroyKeys: true, DryRun: true})
	must(t, err)
	if plan.NumKeysDestroyed != 1 || plan.NumFiles < 3 {
		t.Fatalf("plan %+v", plan)
	}
	r, err := ws.DeleteVM(context.Background(), "alice", "shred", DeleteOptions{DestroyKeys: true})
	must(t, err)
	if r.NumKeysDestroyed != 1 || r.KEKID == "" {
		t.Fatalf("result %+v", r)
	}
	if _, err := os.Stat(home); !os.IsNotExist(err) {
		t.Fatalf("home still there: %v", err)
	}
	if out, err := exec.Command("cp", "-a", backup, home).CombinedOutput(); err != nil {
		t.Fatalf("cp back: %v %s", err, out)
	}
	vm, err = host.RegisterVM("alice", filepath.Join(home, "shred.vmx"), ws.Folder(), "")
	if !errors.Is(err, ErrVMLocked) {
		t.Fatalf("the copy opened after crypto-shredding: %v", err)
	}
	if vm != nil {
		vm.Close()
	}
	if _, err := ws.DeleteVM(context.Background(), "nobody", "shred", DeleteOptions{}); !errors.Is(err, ErrDenied) {
		t.Fatalf("nobody: %v", err)
	}
	must(t, ws.UnregisterVM("alice", "shred"))
}

// stopAfter is a context whose Err turns to Canceled after n calls: the
// binding asks before the call and once per segment.
type stopAfter struct {
	context.Context
	n int
}

func (c *stopAfter) Err() error {
	c.n--
	if c.n < 0 {
		return context.Canceled
	}
	return nil
}

func TestContextStopsConversionResumably(t *testing.T) {
	e := newEnv(t)
	vm, err := e.host.CreateVM(VMCreateOptions{Principal: "alice", HomeDir: filepath.Join(e.dir, "ctx1"), Name: "ctx1", Folder: "vms"})
	must(t, err)
	defer vm.Close()
	id, err := vm.AddDisk("alice", 8<<20, 512)
	must(t, err)
	data, _ := RandomBytes(8 << 20)
	d, err := vm.OpenDisk("alice", id, 0)
	must(t, err)
	_, err = d.WriteAt(data, 0)
	must(t, err)
	must(t, d.Close())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := vm.ApplyStoragePolicy(ctx, "alice", encPolicy, 1<<20); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled before: %v", err)
	}
	// stopped after the first segment: context.Canceled, and resumable
	err = vm.ApplyStoragePolicy(&stopAfter{Context: context.Background(), n: 2}, "alice", encPolicy, 1<<20)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("stopped midway: %v", err)
	}
	must(t, vm.Resume(context.Background(), "alice", 1<<20))
	d, err = vm.OpenDisk("alice", id, DiskReadOnly)
	must(t, err)
	defer d.Close()
	if enc, _ := d.Encrypted(); !enc {
		t.Fatal("not encrypted after resume")
	}
	got := make([]byte, len(data))
	_, err = d.ReadAt(got, 0)
	must(t, err)
	if string(got) != string(data) {
		t.Fatal("data after a stopped and resumed conversion")
	}
}

func TestErrorTextNamesNoCFunction(t *testing.T) {
	e := newEnv(t)
	vm, err := e.host.CreateVM(VMCreateOptions{Principal: "alice", HomeDir: filepath.Join(e.dir, "err1"), Name: "err1", Folder: "vms", StoragePolicy: encPolicy})
	must(t, err)
	defer vm.Close()
	err = vm.RekeyShallow(context.Background(), "bob", "", "")
	if !errors.Is(err, ErrDenied) {
		t.Fatalf("bob: %v", err)
	}
	if strings.Contains(err.Error(), "vmenc_") || !strings.Contains(err.Error(), "vm rekey shallow") {
		t.Fatalf("error text %q", err.Error())
	}
	var ve *Error
	if !errors.As(err, &ve) || ve.Op != "vmenc_vm_rekey_shallow" {
		t.Fatalf("Op kept for logs: %+v", ve)
	}
}
