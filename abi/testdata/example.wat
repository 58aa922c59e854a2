;; example.wat: the plugin of the runnable examples (abi, abi/nethttp,
;; abi/abitest, abi/promcollector: their example_test.go files), written by
;; hand so that the examples need no SDK build. ABI 0.2.1.
;;   - proxy_on_configure defines the counter "example.requests" and logs
;;     "example: configured" at info;
;;   - proxy_on_request_headers counts the request; if the request has an
;;     x-deny header it answers 403 "denied\n" (details "example_denied") and
;;     pauses, else it adds "x-example: hello" to the request headers;
;;   - proxy_on_response_headers adds "x-plugin: example" to the response.
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $inc (param i32 i64) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $hget (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $hadd (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0x10) "example.requests")
  (data (i32.const 0x30) "example: configured")
  (data (i32.const 0x50) "x-deny")
  (data (i32.const 0x60) "denied\n")
  (data (i32.const 0x70) "example_denied")
  (data (i32.const 0x80) "x-example")
  (data (i32.const 0x90) "hello")
  (data (i32.const 0xa0) "x-plugin")
  (data (i32.const 0xb0) "example")
  (global $heap (mut i32) (i32.const 0x8000))
  (global $counter (mut i32) (i32.const 0))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    ;; counter (type 0), its id written at 0x200
    (drop (call $define (i32.const 0) (i32.const 0x10) (i32.const 16) (i32.const 0x200)))
    (global.set $counter (i32.load (i32.const 0x200)))
    ;; info (level 2)
    (drop (call $log (i32.const 2) (i32.const 0x30) (i32.const 19)))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $inc (global.get $counter) (i64.const 1)))
    ;; request headers (map 0): x-deny present (status OK)?
    (if (i32.eqz (call $hget (i32.const 0) (i32.const 0x50) (i32.const 6) (i32.const 0x210) (i32.const 0x214)))
      (then
        ;; 403, details, body, no headers (empty map), no gRPC status (-1)
        (drop (call $local (i32.const 403) (i32.const 0x70) (i32.const 14) (i32.const 0x60) (i32.const 7)
          (i32.const 0) (i32.const 0) (i32.const -1)))
        (return (i32.const 1))))
    (drop (call $hadd (i32.const 0) (i32.const 0x80) (i32.const 9) (i32.const 0x90) (i32.const 5)))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    ;; response headers (map 2)
    (drop (call $hadd (i32.const 2) (i32.const 0xa0) (i32.const 8) (i32.const 0xb0) (i32.const 7)))
    (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32))
)
