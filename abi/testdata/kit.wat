;; kit.wat: a plugin for the conformance kit's own tests (abi/abitest). Its
;; behaviour is chosen by the size of the VM configuration:
;;   1: proxy_on_context_create traps (unreachable) for stream contexts;
;;   2: proxy_on_tick traps;
;;   3: proxy_on_request_headers pauses, and nothing ever continues it.
;; Otherwise every callback continues. proxy_on_configure sets a tick period
;; of 10 ms; proxy_on_tick logs "kit: tick"; a stream context logs
;; "kit: stream context". It imports proxy_anywasm_lacks_this, which the
;; host does not implement (an UNIMPLEMENTED stub).
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))
  (import "env" "proxy_anywasm_lacks_this" (func $lacking (param i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (global $mode (mut i32) (i32.const 0))
  (data (i32.const 16) "kit: tick")
  (data (i32.const 32) "kit: stream context")
  (func (export "proxy_abi_version_0_2_0"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (global.set $mode (local.get 1))
    (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $tick (i32.const 10)))
    (i32.const 1))
  (func (export "proxy_on_context_create") (param $id i32) (param $parent i32)
    (if (i32.eqz (local.get $parent)) (then (return)))
    (if (i32.eq (global.get $mode) (i32.const 1)) (then unreachable))
    (drop (call $log (i32.const 2) (i32.const 32) (i32.const 19))))
  (func (export "proxy_on_tick") (param i32)
    (if (i32.eq (global.get $mode) (i32.const 2)) (then unreachable))
    (drop (call $log (i32.const 2) (i32.const 16) (i32.const 9))))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (i32.eq (global.get $mode) (i32.const 3))))
