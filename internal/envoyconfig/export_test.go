package envoyconfig

import "google.golang.org/protobuf/reflect/protoreflect"

// Subset is the subset, for TestSubset.
func Subset() map[protoreflect.FullName]map[protoreflect.Name]bool { return subset }
