;; One export per trap, for the trap classification tests.
(module
  (type $v (func))
  (type $i (func (param i32)))
  (memory (export "memory") 1)
  (table 2 funcref)
  (elem (i32.const 0) $nop)
  (func $nop)
  (func (export "unreachable") unreachable)
  (func (export "memory_oob") (drop (i32.load (i32.const 70000))))
  (func $recurse (export "stack_overflow") (call $recurse))
  (func (export "div_by_zero") (drop (i32.div_s (i32.const 1) (i32.const 0))))
  (func (export "int_overflow") (drop (i32.div_s (i32.const 0x80000000) (i32.const -1))))
  (func (export "invalid_conversion") (drop (i32.trunc_f32_s (f32.const nan))))
  (func (export "type_mismatch") (call_indirect (type $i) (i32.const 0) (i32.const 0)))
  (func (export "uninitialized_element") (call_indirect (type $v) (i32.const 1)))
  (func (export "table_oob") (call_indirect (type $v) (i32.const 5)))
  (func (export "loop") (loop $l (br $l)))
  ;; count(n) runs a loop of n iterations and returns n
  (func (export "count") (param $n i32) (result i32)
    (local $i i32)
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    (local.get $i)))
