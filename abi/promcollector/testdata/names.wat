;; A Proxy-Wasm plugin (ABI 0.2.1) that defines metrics whose names are not
;; Prometheus names, some of which collide once sanitized and suffixed.
;; Rebuild with wat2wasm names.wat -o names.wasm. On plugin start
;; (proxy_on_configure) it defines, in this order, and then sets:
;;   counter   "envoy.wasm.x"        incremented by 5 (exposed as envoy_wasm_x_total)
;;   gauge     "envoy_wasm_x_total"  recorded 7   (collides with envoy.wasm.x)
;;   histogram "h"                   recorded 1
;;   gauge     "h_count"             recorded 4   (clashes with h's _count)
;;   gauge     "9lives"              recorded 9
;;   counter   "a-b:c"               incremented by 2
;;   counter   "done_total"          incremented by 1 (already ends in _total)
;;   gauge     "requests_total"      recorded 11  (collide.wasm's counter
;;                                                 "requests" is exposed so)
(module
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $inc (param i32 i64) (result i32)))
  (import "env" "proxy_record_metric" (func $rec (param i32 i64) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0x10) "envoy.wasm.x")
  (data (i32.const 0x20) "envoy_wasm_x_total")
  (data (i32.const 0x40) "h")
  (data (i32.const 0x50) "h_count")
  (data (i32.const 0x60) "9lives")
  (data (i32.const 0x70) "a-b:c")
  (data (i32.const 0x80) "done_total")
  (data (i32.const 0x90) "requests_total")
  (global $heap (mut i32) (i32.const 0x8000))

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
    (drop (call $inc (call $m (i32.const 0) (i32.const 0x10) (i32.const 12)) (i64.const 5)))
    (drop (call $rec (call $m (i32.const 1) (i32.const 0x20) (i32.const 18)) (i64.const 7)))
    (drop (call $rec (call $m (i32.const 2) (i32.const 0x40) (i32.const 1)) (i64.const 1)))
    (drop (call $rec (call $m (i32.const 1) (i32.const 0x50) (i32.const 7)) (i64.const 4)))
    (drop (call $rec (call $m (i32.const 1) (i32.const 0x60) (i32.const 6)) (i64.const 9)))
    (drop (call $inc (call $m (i32.const 0) (i32.const 0x70) (i32.const 5)) (i64.const 2)))
    (drop (call $inc (call $m (i32.const 0) (i32.const 0x80) (i32.const 10)) (i64.const 1)))
    (drop (call $rec (call $m (i32.const 1) (i32.const 0x90) (i32.const 14)) (i64.const 11)))
    (i32.const 1))
)
