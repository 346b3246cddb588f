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

// BenchmarkTrivialCall measures the per-call overhead (cgo + handle lock).
func BenchmarkTrivialCall(b *testing.B) {
	key, _ := RandomBytes(64)
	x, _ := NewXTS(key, 4096, "")
	defer x.Close()
	for i := 0; i < b.N; i++ {
		_ = x.SectorSize()
	}
}
