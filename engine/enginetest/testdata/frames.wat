;; Conformance guest: trap backtraces (engine.Trap.Frames). It is built twice,
;; with and without a name section:
;; wat2wasm: --debug-names -o frames.wasm
;; wat2wasm: -o frames_nonames.wasm
(module $frames
  (import "env" "fail" (func $fail))
  (import "env" "reenter" (func $reenter (param i32) (result i32)))
  (memory (export "memory") 1)
  ;; trigger2 -> three -> two -> one, which hits unreachable
  (func $one unreachable)
  (func $two (call $one))
  (func $three (call $two))
  (func $trigger2 (export "trigger2") (call $three))
  ;; trap_div -> divide, which divides 1 by its argument
  (func $divide (param i32) (result i32) (i32.div_u (i32.const 1) (local.get 0)))
  (func $trap_div (export "trap_div") (param i32) (result i32) (call $divide (local.get 0)))
  ;; trap_oob -> load, which reads past the end of memory
  (func $load (result i32) (i32.load (i32.const 0xfffffff0)))
  (func $trap_oob (export "trap_oob") (result i32) (call $load))
  ;; call_fail -> env.fail, a host function that fails
  (func $call_fail (export "call_fail") (call $fail))
  ;; re-entrancy: outer -> env.reenter, which calls inner -> two -> one
  (func $outer (export "outer") (param i32) (result i32) (call $reenter (local.get 0)))
  (func $inner (export "inner") (param i32) (result i32) (call $two) (local.get 0))
  ;; deep(n) calls itself n times, then hits unreachable: n + 1 frames
  (func $deep (export "deep") (param i32)
    (if (local.get 0)
      (then (call $deep (i32.sub (local.get 0) (i32.const 1))))
      (else unreachable)))
  ;; stack overflow
  (func $recurse (export "recurse") (call $recurse))
)
