package testutil

import (
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/plugins/sdk"
)

// AppendSDKFields appends fields, flowtap's internal event fields, as the
// SDK's fields (what a sink receives), for tests and benchmarks that hand
// events to an sdk.Sink in-process. The SDK has its own types on purpose
// (plugins/sdk/README.md): this copy is the in-process stand-in for the
// encoding that carries them to a plugin.
func AppendSDKFields(dst []sdk.Field, fields []events.Field) []sdk.Field {
	for _, f := range fields {
		v := f.Value
		dst = append(dst, sdk.Field{Name: f.Name, Value: sdk.Value{
			Kind: sdk.Kind(v.Kind), Str: v.Str, Uint: v.Uint, Int: v.Int, Bool: v.Bool, Strings: v.Strings,
		}})
	}
	return dst
}
