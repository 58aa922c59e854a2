;; Guest for the backend's own tests: host calls that look at memory and at
;; the context, nested calls, and a host function that closes its caller.
(module
  (import "env" "peek" (func $peek))
  (import "env" "nest" (func $nest (param i32) (result i32)))
  (import "env" "seectx" (func $seectx))
  (import "env" "closeme" (func $closeme))
  (import "env" "spin" (func $spin))
  (memory (export "memory") 1)
  ;; an active data segment: Wasmtime would map it copy-on-write
  (data (i32.const 64) "anywasm")
  (memory $second (export "second") 2)
  ;; grows the memory, then lets the host look at the new page
  (func (export "grow_then_peek") (drop (memory.grow (i32.const 1))) (call $peek))
  ;; the host sees the outer context, then (nested) the inner one, then the outer again
  (func (export "ctx_outer") (call $seectx) (drop (call $nest (i32.const 1))) (call $seectx))
  (func (export "ctx_inner") (param i32) (result i32) (call $seectx) (local.get 0))
  ;; the host closes the instance; the guest goes on and calls the host again
  (func (export "close_self") (call $closeme) (call $seectx))
  (func (export "forever") (loop $l (br $l)))
  (func (export "spin_inner") (call $spin))
  (func (export "read8") (param i32) (result i32) (i32.load8_u (local.get 0)))
  ;; (i32) -> i32 after a 64-bit argument in the same slot: the result's upper half must be clean
  (func (export "narrow") (param i64) (result i32) (i32.wrap_i64 (local.get 0))))
