// SPDX-License-Identifier: Apache-2.0

package nats

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/flowtap/flowtap/plugins/sdk"
	"github.com/flowtap/flowtap/plugins/sdk/sdktest"
)

// deadServer is a loopback address where nothing listens.
const deadServer = "nats://127.0.0.1:1"

// writeFile writes content to name in a temporary directory and returns
// its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// credsFile writes a credentials file of a new user, signed by a new
// account, as nsc would.
func credsFile(t *testing.T) string {
	t.Helper()
	account, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	token, err := jwt.NewUserClaims(pub).Encode(account)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "user.creds", string(creds))
}

// TestConfigErrors checks every configuration problem the sink reports,
// through the SDK's harness, as the host gets them: key and message.
func TestConfigErrors(t *testing.T) {
	garbage := writeFile(t, "garbage", "not a key\n")
	base := `"servers": ["` + deadServer + `"], "subject": "flowtap.{event}"`
	for _, tc := range []struct {
		name, config string
		want         []string // each a substring of the error
	}{
		{"empty", `{}`, []string{"servers: missing: list the NATS servers", `subject: missing: set the subject to publish on, e.g. "flowtap.{event}"`}},
		{"not an object", `[1]`, []string{"config: json: cannot unmarshal array", "valid keys: servers, subject, jetstream"}},
		{"unknown key", `{` + base + `, "color": "red"}`, []string{`config: json: unknown field "color"`}},
		{"servers not a list", `{"servers": "nats://127.0.0.1:4222", "subject": "x"}`, []string{"cannot unmarshal string", "servers"}},
		{"http URL", `{"servers": ["http://127.0.0.1:4222"], "subject": "x"}`, []string{`servers[0]: "http://127.0.0.1:4222": scheme "http" is not nats or tls`}},
		{"no host", `{"servers": ["nats://"], "subject": "x"}`, []string{`servers[0]: "nats://" is not a URL such as nats://host:4222`}},
		{"second server bad", `{"servers": ["nats://127.0.0.1:4222", "127.0.0.1:4223"], "subject": "x"}`, []string{`servers[1]: "127.0.0.1:4223"`}},
		{"credentials in URL", `{"servers": ["nats://me:secret@127.0.0.1:4222"], "subject": "x"}`, []string{`servers[0]: "nats://me:xxxxx@127.0.0.1:4222" holds credentials: set them in user and password, or token`}},
		{"URL path", `{"servers": ["nats://127.0.0.1:4222/x"], "subject": "x"}`, []string{"servers[0]: ", "has no path or query"}},
		{"empty token", `{"servers": ["` + deadServer + `"], "subject": "flowtap..x"}`, []string{`subject: "flowtap..x": empty token`}},
		{"trailing dot", `{"servers": ["` + deadServer + `"], "subject": "flowtap."}`, []string{`subject: "flowtap.": empty token`}},
		{"wildcard", `{"servers": ["` + deadServer + `"], "subject": "flowtap.*"}`, []string{`subject: "flowtap.*": wildcard "*": a message is published on one subject (use {event}`}},
		{"full wildcard", `{"servers": ["` + deadServer + `"], "subject": "flowtap.>"}`, []string{`wildcard ">"`}},
		{"white space", `{"servers": ["` + deadServer + `"], "subject": "flow tap"}`, []string{`subject: "flow tap": token "flow tap" has ' '`}},
		{"event in a token", `{"servers": ["` + deadServer + `"], "subject": "flowtap.ev_{event}"}`, []string{`subject: "flowtap.ev_{event}": {event} must be a whole token (between dots)`}},
		{"host in a token", `{"servers": ["` + deadServer + `"], "subject": "flowtap.{host}-x.{event}"}`,
			[]string{`subject: "flowtap.{host}-x.{event}": {host} must be a whole token (between dots), as in "flowtap.{host}.{event}"`}},
		{"core NATS with a stream", `{` + base + `, "jetstream": false, "stream": "S"}`, []string{"jetstream: false (core NATS) does not go with stream or create_stream"}},
		{"create without a name", `{` + base + `, "create_stream": true}`, []string{"create_stream: name the stream to create in stream"}},
		{"stream options without create", `{` + base + `, "stream": "S", "max_age": "1h", "max_bytes": 10, "duplicate_window": "1m", "replicas": 3, "discard": "new"}`,
			[]string{"duplicate_window: applies to a stream the sink creates: set create_stream: true", "max_age: applies", "max_bytes: applies",
				"replicas: applies", "discard: applies"}},
		{"bad replicas and discard", `{` + base + `, "stream": "S", "create_stream": true, "replicas": 7, "discard": "oldest"}`,
			[]string{"replicas: must be 1 to 5, not 7 (3 survives the loss of one server)",
				`discard: "oldest" is not old or new: old drops the oldest messages when the stream is full, new refuses new ones`}},
		{"bad stream options", `{` + base + `, "stream": "S", "create_stream": true, "max_age": "forever", "max_bytes": -1, "duplicate_window": "0s"}`,
			[]string{`max_age: must be a positive duration such as "5s", not "forever"`, "max_bytes: must be 0 (no bound) or more, not -1", `duplicate_window: must be a positive duration`}},
		{"window beyond age", `{` + base + `, "stream": "S", "create_stream": true, "max_age": "1m", "duplicate_window": "5m"}`, []string{"duplicate_window: 5m0s is longer than max_age 1m0s"}},
		{"bad stream name", `{` + base + `, "stream": "a.b"}`, []string{`stream: "a.b" is not a stream name`}},
		{"bad timeouts", `{` + base + `, "timeout": "soon", "connect_timeout": "-1s", "max_in_flight": -1}`,
			[]string{`connect_timeout: must be a positive duration such as "5s", not "-1s"`, "max_in_flight: must be 1 or more, not -1", `timeout: must be a positive duration such as "5s", not "soon"`}},
		{"timeout too long", `{` + base + `, "timeout": "1m"}`, []string{"timeout: must be at most 25s, not 1m: flowtap counts a sink that has not acknowledged a batch within 30s as hung"}},
		{"user without password", `{` + base + `, "user": "me"}`, []string{"user: set both user and password, or neither"}},
		{"two auth methods", `{` + base + `, "user": "me", "password": "pw", "token": "t"}`, []string{"token: user/password is set too: use at most one authentication method: user and password, token, creds_file or nkey_seed_file"}},
		{"three auth methods", `{` + base + `, "token": "t", "creds_file": "` + credsFile(t) + `", "nkey_seed_file": "` + garbage + `"}`, []string{"creds_file: token is set too", "nkey_seed_file: token is set too"}},
		{"missing creds file", `{` + base + `, "creds_file": "/nonexistent/user.creds"}`, []string{"creds_file: open /nonexistent/user.creds: no such file or directory"}},
		{"bad creds file", `{` + base + `, "creds_file": "` + garbage + `"}`, []string{"creds_file: " + garbage + " holds no user JWT"}},
		{"bad seed file", `{` + base + `, "nkey_seed_file": "` + garbage + `"}`, []string{"nkey_seed_file: " + garbage + ": ", "want a file holding an NKey user seed"}},
		{"tls cert without key", `{` + base + `, "tls": {"cert_file": "/c.pem"}}`, []string{"tls.cert_file: set both tls.cert_file and tls.key_file, or neither"}},
		{"tls missing CA", `{` + base + `, "tls": {"ca_file": "/nonexistent/ca.pem"}}`, []string{"tls.ca_file: open /nonexistent/ca.pem"}},
		{"tls CA not PEM", `{` + base + `, "tls": {"ca_file": "` + garbage + `"}}`, []string{"tls.ca_file: " + garbage + " holds no PEM certificate"}},
		{"tls unknown key", `{` + base + `, "tls": {"insecure": true}}`, []string{`unknown field "insecure"`}},
		{"reserved header", `{` + base + `, "headers": {"Nats-Msg-Id": "x"}}`, []string{"headers.Nats-Msg-Id: the sink sets Nats-Msg-Id itself"}},
		{"bad header name", `{` + base + `, "headers": {"X Env": "x", "A:B": "y"}}`, []string{`headers.A:B: "A:B" is not a header name`, `headers.X Env: "X Env" is not a header name`}},
		{"bad packing", `{` + base + `, "events_per_message": 5000, "max_message_bytes": 100}`,
			[]string{"events_per_message: must be 1 (a message per event) to 4096 (events of one subject packed into a message), not 5000",
				"max_message_bytes: must be 1024 to 67108864 (and within the server's max_payload), not 100"}},
		{"negative events per message", `{` + base + `, "events_per_message": -1}`, []string{"events_per_message: must be 1 (a message per event) to 4096"}},
		{"message bytes without packing", `{` + base + `, "max_message_bytes": 65536}`,
			[]string{"max_message_bytes: applies to packed messages: set events_per_message above 1"}},
		{"packed reserved headers", `{` + base + `, "events_per_message": 64, "headers": {"Flowtap-Events": "1", "content-type": "text/plain"}}`,
			[]string{"headers.Flowtap-Events: the sink sets Flowtap-Events itself on packed messages (events_per_message above 1)",
				"headers.content-type: the sink sets content-type itself on packed messages"}},
		{"header value with a newline", `{` + base + `, "headers": {"X-Env": "a\nb"}}`, []string{"headers.X-Env: a header value has no line break"}},
		{"no server answers", `{"servers": ["` + deadServer + `"], "subject": "x", "connect_timeout": "1s"}`,
			[]string{"servers: connect to " + deadServer + " (within 1s each): nats: no servers available for connection: check that nats-server runs there"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := sdktest.New(t, New()).Configure(tc.config)
			if _, ok := err.(sdk.ConfigErrors); !ok {
				t.Fatalf("Configure = %T %v, want sdk.ConfigErrors", err, err)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Configure:\n got %v\nwant %q in it", err, want)
				}
			}
		})
	}
}

// TestValidateOnly checks a config without connecting: a valid config
// naming a server where nothing listens passes, and problems are still
// reported.
func TestValidateOnly(t *testing.T) {
	sdktest.SetValidateOnly(t)
	ok := map[string]any{"servers": []string{deadServer}, "subject": "flowtap.{event}", "stream": "FLOWTAP", "create_stream": true,
		"max_age": "1h", "creds_file": credsFile(t)}
	if err := sdktest.New(t, New()).Configure(ok); err != nil {
		t.Errorf("validating a good config: %v", err)
	}
	bad := map[string]any{"servers": []string{deadServer}, "subject": "flowtap.*"}
	if err := sdktest.New(t, New()).Configure(bad); err == nil || !strings.Contains(err.Error(), "subject: ") {
		t.Errorf("validating a bad subject: %v", err)
	}
}

func TestSubjectSubset(t *testing.T) {
	for _, tc := range []struct {
		pattern, filter string
		want            bool
	}{
		{"flowtap.*", "flowtap.*", true},
		{"flowtap.*", "flowtap.>", true},
		{"flowtap.*", ">", true},
		{"flowtap.*", "*.*", true},
		{"flowtap.*", "flowtap", false},
		{"flowtap.*", "flowtap.net_flow_tcp_end", false},
		{"flowtap.*", "flowtap.*.x", false},
		{"flowtap.*.v1", "flowtap.>", true},
		{"flowtap.*.v1", "flowtap.*.v2", false},
		{"flowtap", "flowtap.>", false},
		{"flowtap", "flowtap", true},
		{"flowtap", "*", true},
		{"a.b.c", "a.>", true},
		{"a.b.c", "a.b", false},
		{"a.b", "a.b.c", false},
		{"x.flowtap", "flowtap.>", false},
	} {
		if got := subjectSubset(tc.pattern, tc.filter); got != tc.want {
			t.Errorf("subjectSubset(%q, %q) = %v, want %v", tc.pattern, tc.filter, got, tc.want)
		}
	}
}
