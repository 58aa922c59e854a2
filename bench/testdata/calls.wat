;; Guests for the transition benchmarks: the same module on every runtime.
(module
  (import "env" "nop" (func $nop))
  (import "env" "add" (func $add (param i32 i64) (result i64)))
  (memory (export "memory") 2)
  ;; host -> guest, empty
  (func (export "empty"))
  ;; host -> guest, with arguments and a result
  (func (export "add") (param i32 i64) (result i64)
    (i64.add (i64.extend_i32_u (local.get 0)) (local.get 1)))
  ;; guest -> host: calls env.nop n times, so one call measures n transitions
  (func (export "loop_nop") (param $n i32)
    (block $done
      (loop $l
        (br_if $done (i32.eqz (local.get $n)))
        (call $nop)
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l))))
  ;; guest -> host with arguments: calls env.add n times
  (func (export "loop_add") (param $n i32) (result i64)
    (local $acc i64)
    (block $done
      (loop $l
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $acc (call $add (local.get $n) (local.get $acc)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l)))
    (local.get $acc))
  ;; a loop with no transition, to subtract the loop's own cost
  (func (export "loop_empty") (param $n i32)
    (block $done
      (loop $l
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l)))))
