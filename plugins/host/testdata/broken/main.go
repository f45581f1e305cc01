// SPDX-License-Identifier: Apache-2.0

// Command broken is a sink plugin that gets the start-up wrong, in the
// way its build chooses (go build -ldflags "-X main.mode=<mode>"):
//
//   - stdout: prints a line to stdout before serving;
//   - exit: exits at once with status 2, saying why on stderr;
//   - cookie: serves with another handshake cookie than flowtap's;
//   - garbled: prints a malformed handshake line, then waits.
//
// The host's tests check that each fails Start quickly with an error that
// names the plugin.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/flowtap/flowtap/plugins/internal/wire"
	"github.com/flowtap/flowtap/plugins/sdk"
)

var mode = "stdout"

type nop struct{}

func (nop) Info() sdk.Info                           { return sdk.Info{Name: "broken"} }
func (nop) Configure(context.Context, []byte) error  { return nil }
func (nop) Write(context.Context, []sdk.Event) error { return nil }
func (nop) Close(context.Context) error              { return nil }

func main() {
	switch mode {
	case "stdout":
		fmt.Println("loading configuration from /etc/broken.conf")
		sdk.Serve(nop{})
	case "exit":
		fmt.Fprintln(os.Stderr, "broken: cannot start: no licence")
		os.Exit(2)
	case "cookie":
		hs := wire.Handshake
		hs.MagicCookieKey, hs.MagicCookieValue = "SOME_OTHER_APP_PLUGIN", "x"
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig:  hs,
			VersionedPlugins: map[int]plugin.PluginSet{wire.ProtocolVersion: {wire.PluginName: sdk.Plugin(nop{})}},
			GRPCServer:       plugin.DefaultGRPCServer,
		})
	case "garbled":
		fmt.Println("2|x|carrier-pigeon")
		time.Sleep(time.Minute)
	}
}
