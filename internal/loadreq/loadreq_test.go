package loadreq

import (
	"net/http"
	"testing"
)

func TestChainsAreTheirLength(t *testing.T) {
	for n, c := range Chains {
		if len(c) != n {
			t.Errorf("Chains[%d] has %d plugins: %v", n, len(c), c)
		}
	}
}

func TestBody(t *testing.T) {
	b := Body()
	if len(b) != 64 || b[63] != '\n' {
		t.Fatalf("Body() = %q, want 64 bytes ending in a newline", b)
	}
	b[0] = 'x'
	if Body()[0] != 'a' {
		t.Fatal("Body() shares its bytes between calls")
	}
}

func TestDiscardWriter(t *testing.T) {
	w := NewDiscardWriter()
	w.Header().Set("A", "1")
	w.WriteHeader(http.StatusTeapot)
	if n, err := w.Write([]byte("abc")); n != 3 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	w.Reset()
	if len(w.Header()) != 0 || w.Status != 0 {
		t.Fatalf("after Reset: header %v, status %d", w.Header(), w.Status)
	}
}
