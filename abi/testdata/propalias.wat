;; A Proxy-Wasm plugin (ABI 0.2.0) that checks a property the plugin set
;; survives reads of other properties: on request headers it sets
;; filter state "k" to 200 bytes of "A" (proxy_set_property), reads it back
;; (filter_state.wasm.k), reads request.headers (a serialized map), and reads
;; "k" again: it traps unless the last read is 200 bytes, all "A".
(module
  (import "env" "proxy_set_property" (func $set (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $get (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 0x100) "k")
  (data (i32.const 0x110) "filter_state\00wasm.k")   ;; 19
  (data (i32.const 0x130) "request\00headers")       ;; 15
  (global $heap (mut i32) (i32.const 0x10000))
  (func (export "proxy_abi_version_0_2_0"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (i32.and (i32.add (local.get $size) (i32.const 7)) (i32.const -8))))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $i i32) (local $p i32)
    (memory.fill (i32.const 0x200) (i32.const 0x41) (i32.const 200))
    (if (call $set (i32.const 0x100) (i32.const 1) (i32.const 0x200) (i32.const 200)) (then unreachable))
    (if (call $get (i32.const 0x110) (i32.const 19) (i32.const 0x80) (i32.const 0x84)) (then unreachable))
    (if (call $get (i32.const 0x130) (i32.const 15) (i32.const 0x80) (i32.const 0x84)) (then unreachable))
    (if (call $get (i32.const 0x110) (i32.const 19) (i32.const 0x80) (i32.const 0x84)) (then unreachable))
    (if (i32.ne (i32.load (i32.const 0x84)) (i32.const 200)) (then unreachable))
    (local.set $p (i32.load (i32.const 0x80)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (i32.const 200)))
        (if (i32.ne (i32.load8_u (i32.add (local.get $p) (local.get $i))) (i32.const 0x41)) (then unreachable))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 0))
)
