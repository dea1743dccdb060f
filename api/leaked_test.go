package api_test

import (
	"reflect"
	"slices"
	"testing"

	"keygate/api"
)

// TestLeakTypesMatchTheDocument: the leaked-key report's wire types have
// exactly their schemas' members; a verdict always writes all three and
// allows no others, while a report's schema, like the server, lets members
// it does not know through (a scanner that adds one keeps its reports).
func TestLeakTypesMatchTheDocument(t *testing.T) {
	doc := loadDocument(t)
	for _, tc := range []struct {
		schema     string
		typ        any
		additional bool
	}{
		{"LeakReport", api.LeakReport{}, true},
		{"LeakVerdict", api.LeakVerdict{}, false},
	} {
		s := doc.Components.Schemas[tc.schema].Value
		names, always := members(reflect.TypeOf(tc.typ))
		var props []string
		for name := range s.Properties {
			props = append(props, name)
		}
		slices.Sort(props)
		if !slices.Equal(names, props) {
			t.Errorf("api.%T has members %v, the schema %s %v", tc.typ, names, tc.schema, props)
		}
		required := slices.Sorted(slices.Values(s.Required))
		if !slices.Equal(always, required) {
			t.Errorf("api.%T always has %v, the schema %s requires %v", tc.typ, always, tc.schema, required)
		}
		if has := s.AdditionalProperties.Has; has == nil || *has != tc.additional {
			t.Errorf("schema %s: additionalProperties %v, want %v", tc.schema, has, tc.additional)
		}
	}
	for _, label := range []string{api.LabelTruePositive, api.LabelFalsePositive} {
		if !slices.Contains(doc.Components.Schemas["LeakVerdict"].Value.Properties["label"].Value.Enum, any(label)) {
			t.Errorf("label %s is not in the document", label)
		}
	}
}
