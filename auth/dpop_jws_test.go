package auth

import (
	"bytes"
	"encoding/asn1"
	"math/big"
	"math/rand/v2"
	"testing"
)

// TestES256ASN1 compares es256ASN1 with encoding/asn1's DER of the same
// integers, which is what ecdsa.Verify hands VerifyASN1, on signatures
// with leading zero bytes and high bits set.
func TestES256ASN1(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		sig := make([]byte, 64)
		for j := range sig {
			sig[j] = byte(rng.Uint32())
		}
		switch i % 5 {
		case 1:
			clear(sig[:1+i%7]) // leading zeros in R
		case 2:
			sig[32] |= 0x80 // S negative without a zero byte
		case 3:
			clear(sig[32 : 33+i%3])
			sig[33+i%3] |= 0x80
		}
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		want, err := asn1.Marshal(struct{ R, S *big.Int }{r, s})
		if err != nil {
			t.Fatal(err)
		}
		got, ok := es256ASN1(nil, sig)
		if !ok || !bytes.Equal(got, want) {
			t.Fatalf("es256ASN1(%x) = %x, %v; want %x", sig, got, ok, want)
		}
	}
	for _, sig := range [][]byte{make([]byte, 64), append(make([]byte, 32), bytes.Repeat([]byte{1}, 32)...), make([]byte, 63)} {
		if _, ok := es256ASN1(nil, sig); ok {
			t.Errorf("es256ASN1(%x) accepted", sig)
		}
	}
}

// TestScanClaims: the claims are read as decoding into a map read them:
// exact names (an escaped name is its unescaped self), the last of
// duplicates, values of any type kept as their JSON text.
func TestScanClaims(t *testing.T) {
	tests := []struct {
		json     string
		ok       bool
		htm, jti string // want: "-" absent
	}{
		{`{}`, true, "-", "-"},
		{` { "htm" : "GET" , "jti":"a" } `, true, `"GET"`, `"a"`},
		{`{"HTM":"GET","Jti":"a"}`, true, "-", "-"},
		{`{"h\u0074m":"POST"}`, true, `"POST"`, "-"},
		{`{"htm":"GET","htm":"POST"}`, true, `"POST"`, "-"},
		{`{"x":{"htm":"GET","a":[1,"}",{"b":"\""}]},"jti":null}`, true, "-", "null"},
		{`{"htm":12.5e3,"jti":true}`, true, "12.5e3", "true"},
		{`{"htm":"GET"} x`, false, "-", "-"},
		{`["htm","GET"]`, false, "-", "-"},
		{`null`, false, "-", "-"},
		{``, false, "-", "-"},
	}
	for _, tt := range tests {
		var c proofClaims
		if got := scanClaims([]byte(tt.json), &c); got != tt.ok {
			t.Errorf("scanClaims(%s) = %v, want %v", tt.json, got, tt.ok)
			continue
		}
		for _, m := range []struct {
			name string
			v    claimValue
			want string
		}{{"htm", c.htm, tt.htm}, {"jti", c.jti, tt.jti}} {
			got := string(m.v.raw)
			if !m.v.present() {
				got = "-"
			}
			if got != m.want {
				t.Errorf("scanClaims(%s): %s = %s, want %s", tt.json, m.name, got, m.want)
			}
		}
	}
	var c proofClaims
	scanClaims([]byte(`{"htu":"https://a.example/\u00e9","htm":"G\u0045T"}`), &c)
	if s, ok := c.htu.str(); !ok || s != "https://a.example/é" {
		t.Errorf("htu = %q, %v", s, ok)
	}
	if !c.htm.isString("GET") || c.htm.isString("G\\u0045T") {
		t.Error("escaped htm not compared unescaped")
	}
}

// TestDPoPKeyCache: a second proof with the same header reuses the first
// one's checked key, and a header that differs in one byte is checked on
// its own.
func TestDPoPKeyCache(t *testing.T) {
	f := newDPoPFixture(t, 0)
	p1, p2 := f.proof(t, f.ec), f.proof(t, f.ec)
	hdr, _, _ := bytes.Cut([]byte(p1), []byte("."))
	if _, err := f.verifier.Verify(t.Context(), oneProof(p1), getRequest()); err != nil {
		t.Fatal(err)
	}
	k := f.verifier.keys.get(string(hdr))
	if k == nil || k.jkt != jktOf(t, f.ec.Public()) {
		t.Fatalf("key cache after a proof = %+v", k)
	}
	if _, err := f.verifier.Verify(t.Context(), oneProof(p2), getRequest()); err != nil {
		t.Fatal(err)
	}
	if f.verifier.keys.get(string(hdr)) != k {
		t.Error("the second proof's key was not the cached one")
	}
	// The same header with the other key's signature: the cached key
	// checks the signature, which fails.
	other := f.proof(t, f.ec2)
	forged := string(hdr) + other[bytes.IndexByte([]byte(other), '.'):]
	if _, err := f.verifier.Verify(t.Context(), oneProof(forged), getRequest()); DescribeDPoP(err) != "DPoP proof signature invalid" {
		t.Errorf("Verify(cached header, another key's signature) = %v", err)
	}
}
