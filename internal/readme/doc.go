// Package readme has no code: its test keeps the Go snippets of the
// repository's README.md equal to the runnable examples they are taken from
// (go test runs the examples and checks their output).
//
// A snippet taken from an example is marked with an HTML comment on the
// line before its fence, naming the example's package directory and
// function:
//
//	<!-- example: abi/nethttp.ExampleNew -->
//	```go
//	...
//	```
//
// The block holds the function's body, dedented one tab, up to its
// "// Output:" comment; or the file's import declaration, a blank line and
// then the body. Run go test ./internal/readme -update to rewrite the
// blocks from the examples.
package readme
