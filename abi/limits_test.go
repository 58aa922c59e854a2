package abi_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/anywasm/anywasm/abi"
	"github.com/anywasm/anywasm/engine"
)

// TestHeaderLimitReplaceOverFullMap: a request whose header map is already
// at the host's limits (a client sent it so) still gets a plugin's replace:
// a replace adds no entry and is never refused for size. Refusing it let the
// client's own value through to the upstream.
func TestHeaderLimitReplaceOverFullMap(t *testing.T) {
	forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
		f := load(t, rt, "foreign", abi.PluginConfig{}, abi.Options{ForeignFunctions: map[string]abi.ForeignFunc{
			"reverse": func(_ context.Context, b []byte) ([]byte, error) {
				slices.Reverse(b)
				return b, nil
			},
		}})
		h := reqHeaders(abi.DefaultLimits.MaxHeaderMapPairs + 10)
		h = append(h, abi.Header{Key: "x-input", Value: "anonymous"}, abi.Header{Key: "x-output", Value: "admin"})
		s := f.stream()
		defer f.close(s)
		if a := f.requestHeaders(s, h, true); a != abi.ActionContinue {
			t.Fatalf("action %s", a)
		}
		if got := s.RequestHeaderMap().Values("x-output"); !slices.Equal(got, []string{"suomynona"}) {
			t.Errorf("x-output = %q, want the plugin's value only\nlogs:\n%s", got, f.logs)
		}
	})
}

// TestHeaderLimitAddFailsStream: an add the host refuses because the map
// would go over the limits is a plugin failure under the stream's failure
// policy (a 503 under FAIL_CLOSED, the plugin skipped under FAIL_OPEN),
// never a silent pass; the VM is sound and serves the next stream.
func TestHeaderLimitAddFailsStream(t *testing.T) {
	for _, policy := range []abi.FailurePolicy{abi.FailClosed, abi.FailOpen} {
		t.Run(policy.String(), func(t *testing.T) {
			forEachRuntime(t, func(t *testing.T, rt *engine.Runtime) {
				f := load(t, rt, "headers", abi.PluginConfig{FailurePolicy: policy}, abi.Options{})
				s := f.stream()
				a, err := s.RequestHeaders(f.ctx, reqHeaders(abi.DefaultLimits.MaxHeaderMapPairs), true)
				if err != nil {
					t.Fatal(err)
				}
				if !errors.Is(s.Err(), abi.ErrHeaderLimit) {
					t.Errorf("Err() = %v, want ErrHeaderLimit", s.Err())
				}
				lr := s.LocalResponse()
				switch policy {
				case abi.FailClosed:
					if a != abi.ActionPause || lr == nil || lr.Status != 503 {
						t.Errorf("action %s, local response %+v: want a 503", a, lr)
					}
				case abi.FailOpen:
					if a != abi.ActionContinue || lr != nil {
						t.Errorf("action %s, local response %+v: want continue", a, lr)
					}
				}
				if !f.logs.has("the host refused a plugin's header change") {
					t.Errorf("no error log:\n%s", f.logs)
				}
				_ = s.Close(f.ctx)
				// The VM was not failed: the next stream runs the plugin.
				s = f.stream()
				defer f.close(s)
				f.requestHeaders(s, reqHeaders(10), true)
				if got := get(s.RequestHeaderMap(), "x-anywasm-seen"); got != "10" {
					t.Errorf("next stream: x-anywasm-seen = %s", got)
				}
			})
		})
	}
}
