// Command discard is a sink plugin for the host's tests and benchmarks: it
// accepts every batch and drops it. Config {"reject": "message"} makes it
// reject every batch with that message instead.
package main

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/flowtap/flowtap/plugins/sdk"
)

type discard struct{ reject string }

func (d *discard) Info() sdk.Info { return sdk.Info{Name: "discard", Version: "test"} }

func (d *discard) Configure(_ context.Context, config []byte) error {
	var c struct{ Reject string }
	if err := json.Unmarshal(config, &c); err != nil {
		return sdk.ConfigError{Message: err.Error()}
	}
	d.reject = c.Reject
	sdk.Logger().Info("configured discard sink", "reject", d.reject)
	return nil
}

func (d *discard) Write(context.Context, []sdk.Event) error {
	if d.reject != "" {
		return errors.New(d.reject)
	}
	return nil
}

func (d *discard) Close(context.Context) error { return nil }

func main() { sdk.Serve(&discard{}) }
