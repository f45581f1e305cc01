// Command oldprotocol stands for a sink plugin built against an older SDK:
// it offers only sink protocol version 1 in the go-plugin handshake. The
// host must refuse it and say why.
package main

import (
	"context"

	"github.com/hashicorp/go-plugin"

	"github.com/flowtap/flowtap/plugins/internal/wire"
	"github.com/flowtap/flowtap/plugins/sdk"
)

type old struct{}

func (old) Info() sdk.Info                           { return sdk.Info{Name: "old"} }
func (old) Configure(context.Context, []byte) error  { return nil }
func (old) Write(context.Context, []sdk.Event) error { return nil }
func (old) Close(context.Context) error              { return nil }

func main() {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  wire.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{1: {wire.PluginName: sdk.Plugin(old{})}},
		GRPCServer:       plugin.DefaultGRPCServer,
	})
}
