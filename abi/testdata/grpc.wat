;; A Proxy-Wasm plugin (ABI 0.2.1) that makes a unary gRPC call: the Go SDK
;; has no gRPC API, so it is written by hand. On request headers it calls
;; grpc-backend anywasm.Echo/Echo with the message "ping" and pauses. As
;; Envoy answers a unary call with proxy_on_grpc_receive alone when it
;; succeeds and proxy_on_grpc_close alone when it fails: the response
;; message becomes x-grpc-reply and the request continues; a close answers
;; 502 with the status as gRPC status. A metadata callback (which a unary
;; call must not get) would copy the value of "k" into x-grpc-meta, and a
;; close after a receive would add x-grpc-closed.
(module
  (import "env" "proxy_grpc_call" (func $grpc_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $bget (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $hget (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $hadd (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $effective (param i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0x10) "grpc-backend")
  (data (i32.const 0x20) "anywasm.Echo")
  (data (i32.const 0x30) "Echo")
  (data (i32.const 0x40) "ping")
  (data (i32.const 0x50) "x-grpc-reply")
  (data (i32.const 0x60) "x-grpc-meta")
  (data (i32.const 0x70) "k")
  (data (i32.const 0x90) "grpc failed\n")
  (data (i32.const 0xa0) "x-grpc-closed")
  (data (i32.const 0xb0) "1")
  (global $heap (mut i32) (i32.const 0x8000))
  (global $http (mut i32) (i32.const 0))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (global.set $http (local.get $ctx))
    ;; metadata: an empty map (4 zero bytes at 0x80)
    (drop (call $grpc_call (i32.const 0x10) (i32.const 12) (i32.const 0x20) (i32.const 12)
      (i32.const 0x30) (i32.const 4) (i32.const 0x80) (i32.const 4) (i32.const 0x40) (i32.const 4)
      (i32.const 5000) (i32.const 0x100)))
    (i32.const 1))
  (func (export "proxy_on_grpc_receive_initial_metadata") (param i32 i32 i32)
    (if (i32.eqz (call $hget (i32.const 4) (i32.const 0x70) (i32.const 1) (i32.const 0x110) (i32.const 0x114)))
      (then
        (drop (call $effective (global.get $http)))
        (drop (call $hadd (i32.const 0) (i32.const 0x60) (i32.const 11)
          (i32.load (i32.const 0x110)) (i32.load (i32.const 0x114)))))))
  (func (export "proxy_on_grpc_receive") (param i32 i32) (param $size i32)
    (drop (call $bget (i32.const 5) (i32.const 0) (local.get $size) (i32.const 0x110) (i32.const 0x114)))
    (drop (call $effective (global.get $http)))
    (drop (call $hadd (i32.const 0) (i32.const 0x50) (i32.const 12)
      (i32.load (i32.const 0x110)) (i32.load (i32.const 0x114))))
    (drop (call $continue (i32.const 0))))
  (func (export "proxy_on_grpc_close") (param i32 i32) (param $status i32)
    (drop (call $effective (global.get $http)))
    (drop (call $hadd (i32.const 0) (i32.const 0xa0) (i32.const 13) (i32.const 0xb0) (i32.const 1)))
    (drop (call $local (i32.const 502) (i32.const 0) (i32.const 0) (i32.const 0x90) (i32.const 12)
      (i32.const 0x80) (i32.const 4) (local.get $status))))
)
