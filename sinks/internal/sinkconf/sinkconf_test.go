// SPDX-License-Identifier: Apache-2.0

package sinkconf

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/flowtap/flowtap/plugins/sdk"
)

type testConfig struct {
	Name    string            `json:"name"`
	Size    int               `json:"size"`
	Token   string            `json:"token" sinkconf:"secret"`
	Tags    []string          `json:"tags"`
	Headers map[string]string `json:"headers"`
	Retry   struct {
		Max int `json:"max"`
	} `json:"retry"`
	_ int // not a key
}

func TestKeys(t *testing.T) {
	var got []string
	for _, k := range Keys(&testConfig{}) {
		s := k.Name + ":" + k.Type
		if k.Secret {
			s += ":secret"
		}
		got = append(got, s)
	}
	want := []string{"name:string", "size:number", "token:string:secret", "tags:list", "headers:map", "retry.max:number"}
	if !slices.Equal(got, want) {
		t.Errorf("Keys = %v, want %v", got, want)
	}
	if v := ValidKeys(testConfig{}); v != "name, size, token, tags, headers, retry" {
		t.Errorf("ValidKeys = %q", v)
	}
	if s := Secrets(&testConfig{}); !slices.Equal(s, []string{"token"}) {
		t.Errorf("Secrets = %v", s)
	}
}

func TestDecode(t *testing.T) {
	var c testConfig
	if err := Decode([]byte(`{"name":"a","retry":{"max":3}}`), &c); err != nil || c.Name != "a" || c.Retry.Max != 3 {
		t.Fatalf("Decode: %v, %+v", err, c)
	}
	err := Decode([]byte(`{"colour":1}`), &c)
	var one sdk.ConfigError
	if !errors.As(err, &one) || !strings.Contains(one.Message, `unknown field "colour"`) || !strings.Contains(one.Message, "(valid keys: name, size, token, tags, headers, retry)") {
		t.Errorf("unknown key: %v", err)
	}
}

func TestDecodeEach(t *testing.T) {
	var c testConfig
	var p Problems
	var seen []string
	err := p.DecodeEach([]byte(`{"size":"big","name":"x","zzz":1,"aaa":2}`), &c, func(key string, raw json.RawMessage, err error) {
		seen = append(seen, key)
		if err != nil {
			p.Add(key, "not a number: %s", raw)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, []string{"name", "size"}) || c.Name != "x" {
		t.Errorf("checked %v, name %q", seen, c.Name)
	}
	want := `aaa: unknown key (valid keys: headers, name, retry, size, tags, token); size: not a number: "big"; zzz: unknown key (valid keys: headers, name, retry, size, tags, token)`
	if got := p.Err(); got == nil || got.Error() != want || !p.Has("size") {
		t.Errorf("problems %v, want %s", got, want)
	}
	var one sdk.ConfigError
	if err := p.DecodeEach([]byte(`[1]`), &c, nil); !errors.As(err, &one) || one.Key != "" || !strings.Contains(one.Message, "config is not a JSON object") {
		t.Errorf("not an object: %v", err)
	}
}
