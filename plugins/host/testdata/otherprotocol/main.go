// SPDX-License-Identifier: Apache-2.0

// Command otherprotocol stands for a sink plugin built against another
// SDK than the host's: it offers only the sink protocol version set at
// build time (-ldflags "-X main.version=N"; 1, an older one, by default)
// in the go-plugin handshake. The host must refuse it and say why.
package main

import (
	"context"
	"strconv"

	"github.com/hashicorp/go-plugin"

	"github.com/flowtap/flowtap/plugins/internal/wire"
	"github.com/flowtap/flowtap/plugins/sdk"
)

// version is the protocol version the plugin speaks.
var version = "1"

type other struct{}

func (other) Info() sdk.Info                           { return sdk.Info{Name: "other"} }
func (other) Configure(context.Context, []byte) error  { return nil }
func (other) Write(context.Context, []sdk.Event) error { return nil }
func (other) Close(context.Context) error              { return nil }

func main() {
	v, err := strconv.Atoi(version)
	if err != nil {
		panic(err)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  wire.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{v: {wire.PluginName: sdk.Plugin(other{})}},
		GRPCServer:       plugin.DefaultGRPCServer,
	})
}
