// SPDX-License-Identifier: Apache-2.0

package nats

import (
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/flowtap/flowtap/plugins/sdk/sdktest"
)

// TestAuth connects to servers that require a user and password, a token
// or an NKey: the right credentials store a batch, wrong ones fail
// Configure with a hint.
func TestAuth(t *testing.T) {
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	seedFile, otherSeedFile := writeFile(t, "user.nk", string(seed)), writeFile(t, "other.nk", string(otherSeed))

	for _, tc := range []struct {
		name         string
		server       func(*server.Options)
		client       natsgo.Option // for the test's own client
		right, wrong map[string]any
	}{
		{"user/password", func(o *server.Options) { o.Username, o.Password = "flowtap", "s3cret" }, natsgo.UserInfo("flowtap", "s3cret"),
			map[string]any{"user": "flowtap", "password": "s3cret"}, map[string]any{"user": "flowtap", "password": "wrong"}},
		{"token", func(o *server.Options) { o.Authorization = "t0ken" }, natsgo.Token("t0ken"),
			map[string]any{"token": "t0ken"}, map[string]any{"token": "other"}},
		{"nkey", func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: pub}} }, natsgo.Nkey(pub, user.Sign),
			map[string]any{"nkey_seed_file": seedFile}, map[string]any{"nkey_seed_file": otherSeedFile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, tc.server)
			nc, err := natsgo.Connect(ts.url(), tc.client)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			got, err := nc.SubscribeSync("flowtap.>")
			if err != nil || nc.Flush() != nil {
				t.Fatal(err)
			}
			cfg := func(auth map[string]any) map[string]any {
				c := map[string]any{"servers": []string{ts.url()}, "subject": "flowtap.{event}", "jetstream": false, "connect_timeout": "2s"}
				for k, v := range auth {
					c[k] = v
				}
				return c
			}
			h := configured(t, cfg(tc.right))
			if err := h.Write(flowEvents(1, 1)...); err != nil {
				t.Fatal(err)
			}
			if _, err := got.NextMsg(sdktest.Timeout); err != nil {
				t.Errorf("no message with the right credentials: %v", err)
			}
			err = sdktest.New(t, New()).Configure(cfg(tc.wrong))
			if err == nil || !strings.Contains(err.Error(), "servers: ") || !strings.Contains(err.Error(), "the server refused the credentials") {
				t.Errorf("Configure with wrong credentials = %v", err)
			}
			err = sdktest.New(t, New()).Configure(cfg(nil))
			if err == nil || !strings.Contains(err.Error(), "the server refused the credentials") {
				t.Errorf("Configure without credentials = %v", err)
			}
		})
	}
}
