// SPDX-License-Identifier: Apache-2.0

// Package proto holds the gRPC protocol between the flowtap host and its
// sink plugins: sink.proto and the Go code generated from it. Plugin authors
// implement sdk.Sink instead of using this package; it is internal to
// flowtap (the host and the SDK share it).
package proto

//go:generate sh -c "cd ../../../.. && protoc --plugin=protoc-gen-go=$(go tool -n protoc-gen-go) --plugin=protoc-gen-go-grpc=$(go tool -n protoc-gen-go-grpc) -I . --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative plugins/internal/wire/proto/sink.proto"
