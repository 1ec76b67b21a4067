package sessionstore

import "testing"

// TestBound: a session is bound exactly when it holds a DPoP key thumbprint.
func TestBound(t *testing.T) {
	tests := []struct {
		jkt  string
		want bool
	}{
		{"", false},
		{"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I", true},
	}
	for _, tt := range tests {
		if s := (Session{JKT: tt.jkt}); s.Bound() != tt.want {
			t.Errorf("Session{JKT: %q}.Bound() = %v, want %v", tt.jkt, s.Bound(), tt.want)
		}
	}
}
