// Command block_layer is the C block-layer example in Go: a workspace, an
// encrypted VM with one disk, and a queue of guest requests served through
// the disk's io.ReaderAt / io.WriterAt.
//
//	go run . WORKDIR   (PKG_CONFIG_PATH pointing at an installed vmenc.pc)
package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	vmenc "github.com/vmenc/vmenc/bindings/go"
)

func run(dir string) error {
	pass := []byte("block layer demo passphrase") // a host takes it from its secret store
	defer vmenc.Wipe(pass)
	if err := vmenc.CreateWorkspace(dir, vmenc.WorkspaceCreateOptions{Passphrase: pass, Admin: "admin", KDFOps: 1, KDFMemKiB: 8}); err != nil {
		return err
	}
	ws, err := vmenc.OpenWorkspace(dir, pass, true)
	if err != nil {
		return err
	}
	defer ws.Close()
	host, err := ws.Host()
	if err != nil {
		return err
	}
	defer host.Close()
	vm, err := host.CreateVM(vmenc.VMCreateOptions{Principal: "admin", HomeDir: filepath.Join(ws.DatastoreDir(), "guest01"),
		Name: "guest01", Folder: ws.Folder(), StoragePolicy: "VM Encryption Policy"})
	if err != nil {
		return err
	}
	defer vm.Close()
	id, err := vm.AddDisk("admin", 8<<20, 4096)
	if err != nil {
		return err
	}
	disk, err := vm.OpenDisk("admin", id, 0)
	if err != nil {
		return err
	}
	defer disk.Close()
	type req struct {
		write bool
		off   int64
		n     int
		fill  byte
	}
	queue := []req{{true, 0, 4096, 0xa1}, {true, 1 << 20, 65536, 0xb2}, {true, 12345, 100, 0xc3},
		{false, 0, 4096, 0xa1}, {false, 1 << 20, 65536, 0xb2}, {false, 12345, 100, 0xc3}}
	bad := 0
	for _, r := range queue {
		want := bytes.Repeat([]byte{r.fill}, r.n)
		if r.write {
			if _, err := disk.WriteAt(want, r.off); err != nil {
				return err
			}
			continue
		}
		got := make([]byte, r.n)
		if _, err := disk.ReadAt(got, r.off); err != nil {
			return err
		}
		if !bytes.Equal(got, want) {
			bad++
		}
	}
	if err := disk.Flush(); err != nil {
		return err
	}
	enc, err := disk.Encrypted()
	if err != nil {
		return err
	}
	fmt.Printf("block_layer (Go): vmenc %s, disk %s: %d requests served, encrypted=%v, mismatches=%d\n",
		vmenc.Version(), id, len(queue), enc, bad)
	if bad != 0 || !enc {
		return fmt.Errorf("check failed")
	}
	return nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: block_layer WORKDIR")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "block_layer:", err)
		os.Exit(1)
	}
}
