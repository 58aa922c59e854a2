;; A Proxy-Wasm plugin (ABI 0.2.1) whose metrics are named like the families
;; a host exposes beside them: Go's, the process's, anywasm-proxy's own.
;; Rebuild with wat2wasm collide.wat -o collide.wasm. On plugin start
;; (proxy_on_configure) it defines, in this order, and then sets:
;;   gauge     "go_goroutines"              recorded 1000000
;;   gauge     "process_open_fds"           recorded 1000000
;;   counter   "proxy_http_requests_total"  incremented by 7
;;   counter   "requests"                   incremented by 1 on every request
;; and lets every request through (it has no other HTTP callback).
(module
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $inc (param i32 i64) (result i32)))
  (import "env" "proxy_record_metric" (func $rec (param i32 i64) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0x10) "go_goroutines")
  (data (i32.const 0x20) "process_open_fds")
  (data (i32.const 0x40) "proxy_http_requests_total")
  (data (i32.const 0x60) "requests")
  (global $heap (mut i32) (i32.const 0x8000))
  (global $requests (mut i32) (i32.const 0))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  ;; $m defines a metric and returns its id (0 if refused).
  (func $m (param $type i32) (param $ptr i32) (param $len i32) (result i32)
    (i32.store (i32.const 0x200) (i32.const 0))
    (drop (call $define (local.get $type) (local.get $ptr) (local.get $len) (i32.const 0x200)))
    (i32.load (i32.const 0x200)))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $rec (call $m (i32.const 1) (i32.const 0x10) (i32.const 13)) (i64.const 1000000)))
    (drop (call $rec (call $m (i32.const 1) (i32.const 0x20) (i32.const 16)) (i64.const 1000000)))
    (drop (call $inc (call $m (i32.const 0) (i32.const 0x40) (i32.const 25)) (i64.const 7)))
    (global.set $requests (call $m (i32.const 0) (i32.const 0x60) (i32.const 8)))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $inc (global.get $requests) (i64.const 1)))
    (i32.const 0))
)
