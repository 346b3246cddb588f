package vmenc

import "testing"

func benchXTS(b *testing.B, n int) {
	key, _ := RandomBytes(64)
	x, err := NewXTS(key, 4096, "")
	if err != nil {
		b.Fatal(err)
	}
	defer x.Close()
	buf := make([]byte, n)
	b.SetBytes(int64(n))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := x.Encrypt(uint64(i), buf, buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkXTS4K(b *testing.B)  { benchXTS(b, 4096) }
func BenchmarkXTS64K(b *testing.B) { benchXTS(b, 65536) }

// benchXTSIOV encrypts batches of batch I/Os of n bytes, in place, one
// EncryptIOV (one cgo call) per batch; the vector is rebuilt every batch,
// as a block layer would for each submission.
func benchXTSIOV(b *testing.B, n, batch int) {
	key, _ := RandomBytes(64)
	x, err := NewXTS(key, 4096, "")
	if err != nil {
		b.Fatal(err)
	}
	defer x.Close()
	buf := make([]byte, n*batch)
	iov := make([]XTSIOV, batch)
	b.SetBytes(int64(n * batch))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range iov {
			iov[j] = XTSIOV{FirstSector: uint64(i*batch + j), Off: j * n, Len: n}
		}
		if err := x.EncryptIOV(buf, buf, iov); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkXTSIOV64x4K(b *testing.B)  { benchXTSIOV(b, 4096, 64) }
func BenchmarkXTSIOV64x64K(b *testing.B) { benchXTSIOV(b, 65536, 64) }

// BenchmarkTrivialCall measures the per-call overhead (cgo + handle lock).
func BenchmarkTrivialCall(b *testing.B) {
	key, _ := RandomBytes(64)
	x, _ := NewXTS(key, 4096, "")
	defer x.Close()
	for i := 0; i < b.N; i++ {
		_ = x.SectorSize()
	}
}
