package abitest_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/anywasm/anywasm/abi/abitest"
	_ "github.com/anywasm/anywasm/engine/all" // the runtimes to compare: every one the build has
)

// Check a plugin (abi/testdata/example.wat) against a script, on every
// runtime compiled in. In a plugin's own test, abitest.Run(t, wasm, script)
// does the same and reports through t.
func Example() {
	wasm, err := os.ReadFile("../testdata/example.wasm")
	if err != nil {
		log.Fatal(err)
	}
	script, err := abitest.ParseScript([]byte(`{
	  "name": "example",
	  "load": {"abi_version": "0.2.1", "logs": [{"contains": "configured", "level": "info"}]},
	  "exchanges": [
	    {"name": "allowed", "steps": [
	      {"call": "request_headers", "headers": {":path": "/"}, "end_of_stream": true,
	       "expect": {"action": "continue", "headers_contain": {"x-example": "hello"}}},
	      {"call": "response_headers", "headers": {":status": "200"}, "end_of_stream": true,
	       "expect": {"headers_contain": {"x-plugin": "example"}}}]},
	    {"name": "denied", "steps": [
	      {"call": "request_headers", "headers": {":path": "/", "x-deny": "1"}, "end_of_stream": true,
	       "expect": {"local_response": {"status": 403, "body": "denied\n"}}}],
	     "expect": {"metrics": {"example.requests": {"value": 2}}}}
	  ]
	}`))
	if err != nil {
		log.Fatal(err) // an invalid script
	}
	report, err := abitest.Check(context.Background(), wasm, script)
	if err != nil {
		log.Fatal(err)
	}
	for _, rr := range report.Runtimes {
		for _, f := range rr.Failures {
			fmt.Println(f) // an expectation a runtime did not meet
		}
	}
	fmt.Println("runtimes agree:", len(report.Diffs) == 0)
	fmt.Println("pass:", report.OK())
	// The transcript of one runtime (every runtime gave the same).
	fmt.Print(report.Runtimes[0].Transcript)
	// Output:
	// runtimes agree: true
	// pass: true
	// load:
	//     abi version: 0.2.1
	//     log info: example: configured
	// exchange "allowed":
	//   step 1 (request_headers):
	//     action: continue
	//     headers: {:path: /; x-example: hello}
	//   step 2 (response_headers):
	//     action: continue
	//     headers: {:status: 200; x-plugin: example}
	//   close:
	//   after:
	//     metric example.requests (counter): 1
	// exchange "denied":
	//   step 1 (request_headers):
	//     action: pause
	//     headers: {:path: /; x-deny: 1}
	//     local response: 403 details "example_denied" headers {} body "denied\n" grpc -1 reset false
	//   close:
	//   after:
	//     metric example.requests (counter): 2
}
