// SPDX-License-Identifier: Apache-2.0

package nats

import (
	_ "embed"
	"slices"
)

//go:embed sample.yaml
var sample []byte

// Sample returns the sink's sample pipeline file (sample.yaml), which
// shows its keys with comments; the registry's tests load it as flowtap
// would and decode its config strictly.
func Sample() []byte { return slices.Clone(sample) }
