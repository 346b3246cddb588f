#!/usr/bin/env bash
# tests/bindings_go.test.sh BUILD_DIR SOURCE_DIR - the Go binding, linked
# through pkg-config against the library installed to a temporary prefix,
# with no network (GOPROXY=off, standard library only): go vet, go test
# under GODEBUG=cgocheck=2 (incl. the XTS cross-check and the PyKMIP test),
# go test -race (KMIP skipped there), and the embedding example.
set -euo pipefail
source "$(dirname "$0")/bindings_common.sh"
skip_if_sanitized "a Go binary"
command -v go >/dev/null || fail "go is not installed (golang-go, scripts/deps.sh)"
install_prefix
export GOPROXY=off GOFLAGS=-mod=mod GOTOOLCHAIN=local LD_LIBRARY_PATH=$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# A private build cache: the cgo flags pkg-config gives name this run's
# temporary prefix, and a shared cache could link against an older one.
export GOCACHE=$T/gocache GOPATH=$T/gopath

cd "$SRC/bindings/go"
go vet ./... || fail "go vet"
[[ -z $(gofmt -l .) ]] || fail "gofmt: $(gofmt -l .)"
GODEBUG=cgocheck=2 go test -count=1 ./... || fail "go test (cgocheck=2)"
VMENC_SKIP_KMIP=1 go test -race -count=1 ./... || fail "go test -race"
# The example imports the binding by its module path through go.work (no
# replace directive); workspace mode takes no -mod flag.
cd "$SRC/examples/embed/go"
! grep -q '^replace' go.mod || fail "examples/embed/go/go.mod needs a replace directive"
GOFLAGS= go vet . || fail "go vet example"
GOFLAGS= go run . "$T/go-example" || fail "examples/embed/go"
echo "1 passed, 0 failed"
