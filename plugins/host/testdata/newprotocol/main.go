// Command newprotocol stands for a sink plugin built against a newer SDK:
// it offers only sink protocol version 3 in the go-plugin handshake. The
// host must refuse it and say why.
package main

import (
	"context"

	"github.com/hashicorp/go-plugin"

	"github.com/flowtap/flowtap/plugins/internal/wire"
	"github.com/flowtap/flowtap/plugins/sdk"
)

type newer struct{}

func (newer) Info() sdk.Info                           { return sdk.Info{Name: "newer"} }
func (newer) Configure(context.Context, []byte) error  { return nil }
func (newer) Write(context.Context, []sdk.Event) error { return nil }
func (newer) Close(context.Context) error              { return nil }

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  wire.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{3: {wire.PluginName: sdk.Plugin(newer{})}},
		GRPCServer:       plugin.DefaultGRPCServer,
	})
}
