package abitest

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzScript: ParseScript never panics, and a script it accepts marshals
// (encoding/json) and parses again to an equal script (reflect.DeepEqual),
// which marshals to the same bytes. The weaker property, for a reason: the
// JSON form leaves empty fields out (omitempty), so an empty map or list
// comes back nil; the script is compared after its empty maps and slices
// are made nil (normalize), which for every field but Expect.Headers means
// what nil means. Expect.Headers keeps the difference: an empty map says
// "the headers must be empty", nil "not checked". Seeds:
// testdata/fuzz/FuzzScript (the scripts of testdata and TestParseScript).
func FuzzScript(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseScript(data)
		if err != nil {
			return
		}
		normalize(reflect.ValueOf(s).Elem(), false)
		m, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("json.Marshal of an accepted script: %v\nscript %s", err, data)
		}
		s2, err := ParseScript(m)
		if err != nil {
			t.Fatalf("the marshalled script is refused: %v\nscript     %s\nmarshalled %s", err, data, m)
		}
		if !reflect.DeepEqual(s, s2) {
			t.Fatalf("the script parsed again differs:\nscript     %s\nmarshalled %s\nfirst  %#v\nsecond %#v", data, m, s, s2)
		}
		if m2, err := json.Marshal(s2); err != nil || !bytes.Equal(m, m2) {
			t.Fatalf("marshal, parse, marshal is not a fixed point (%v):\nfirst  %s\nsecond %s", err, m, m2)
		}
	})
}

// normalize makes empty maps and slices under v nil, except where keep is
// set (Expect.Headers). v is addressable.
func normalize(v reflect.Value, keep bool) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			normalize(v.Elem(), false)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			normalize(v.Field(i), v.Type() == reflect.TypeFor[Expect]() && v.Type().Field(i).Name == "Headers")
		}
	case reflect.Slice:
		if v.Len() == 0 && !keep {
			v.SetZero()
		}
		for i := range v.Len() {
			normalize(v.Index(i), false)
		}
	case reflect.Map:
		if v.Len() == 0 {
			v.SetZero()
		}
		iter := v.MapRange()
		for iter.Next() {
			e := reflect.New(iter.Value().Type()).Elem()
			e.Set(iter.Value())
			normalize(e, false)
			v.SetMapIndex(iter.Key(), e)
		}
	}
}
