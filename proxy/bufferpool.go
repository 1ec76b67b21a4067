package proxy

import "sync"

// copyBufferSize is the size of ReverseProxy's copy buffers, its own default.
const copyBufferSize = 32 << 10

// bufferPool recycles ReverseProxy's copy buffers across requests. It
// pools pointers to arrays, which a slice converts to without allocating
// (a pooled *[]byte would need a new pointer on every Put).
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[copyBufferSize]byte); ok {
		return v[:]
	}
	return new([copyBufferSize]byte)[:]
}

func (b *bufferPool) Put(buf []byte) {
	if len(buf) == copyBufferSize {
		b.p.Put((*[copyBufferSize]byte)(buf))
	}
}
