#!/bin/sh
# Builds the example plugins (the Go-SDK test plugins of abi/testdata/plugins)
# into this directory. Needs Go 1.24+.
set -e
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../../abi/testdata/plugins"
for p in headers metrics local_response; do
	GOOS=wasip1 GOARCH=wasm GOWORK=off go build -trimpath -buildmode=c-shared -o "$here/$p.wasm" "./$p"
done
echo "built: $(cd "$here" && ls *.wasm | tr '\n' ' ')"
