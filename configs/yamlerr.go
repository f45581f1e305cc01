// SPDX-License-Identifier: Apache-2.0

package configs

import (
	"errors"
	"fmt"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// yamlProblem locates a YAML error in src for people. viper's YAML
// library (go.yaml.in/yaml/v3) names the line where the enclosing flow
// or block began, counted from zero for some errors: a '{' left open on
// line 6 is reported on "line 5". goccy/go-yaml's parser names the line
// and column of the token where it found the problem, which is where a
// user looks. It returns false when that parser finds no error (the two
// disagree about the file), and the caller keeps viper's error.
func yamlProblem(path string, src []byte) (Problem, bool) {
	_, err := parser.ParseBytes(src, 0)
	var yerr yaml.Error
	if err == nil || !errors.As(err, &yerr) || yerr.GetToken() == nil {
		return Problem{}, false
	}
	tk := yerr.GetToken()
	// A plain scalar that runs on into a line with a ':' (a key indented
	// too far) is where the parser notices, but the ':' it cannot take
	// is where the mistake is.
	if next := tk.Next; next != nil && next.Type == token.MappingValueType && strings.Contains(tk.Origin, "\n") {
		tk = next
	}
	pos := tk.Position
	msg := "YAML syntax error: " + yerr.GetMessage()
	lines := strings.Split(string(src), "\n")
	if pos.Line >= 1 && pos.Line <= len(lines) {
		if text := strings.TrimRight(lines[pos.Line-1], "\r"); strings.TrimSpace(text) != "" {
			msg += fmt.Sprintf(", here: %q", text)
		}
	}
	return Problem{File: path, Line: pos.Line, Column: pos.Column, Message: msg}, true
}
