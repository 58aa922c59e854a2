;; features.wat without multi-value blocks, for runtimes without
;; engine.CapMultiValue.
(module
  (memory (export "memory") 1)
  (data $d "hello")
  (table $t 4 funcref)
  (table $ext 2 externref)
  (func $one (result i32) (i32.const 1))
  (func $two (result i32) (i32.const 2))
  (elem declare func $one $two)
  ;; bulk memory: memory.init, memory.copy, memory.fill, data.drop
  (func (export "bulk") (result i32)
    (memory.init $d (i32.const 16) (i32.const 0) (i32.const 5))
    (data.drop $d)
    (memory.copy (i32.const 32) (i32.const 16) (i32.const 5))
    (memory.fill (i32.const 37) (i32.const 33) (i32.const 3))
    (i32.load8_u (i32.const 37)))
  ;; sign extension
  (func (export "extend8") (param i32) (result i32) (i32.extend8_s (local.get 0)))
  (func (export "extend32") (param i64) (result i64) (i64.extend32_s (local.get 0)))
  ;; saturating float-to-int
  (func (export "sat") (param f32) (result i32) (i32.trunc_sat_f32_s (local.get 0)))
  ;; reference types: table.set/get with ref.func, table.size, ref.is_null, multiple tables
  (func (export "refs") (result i32)
    (table.set $t (i32.const 2) (ref.func $two))
    (table.set $ext (i32.const 0) (ref.null extern))
    (i32.add
      (i32.add (call_indirect $t (result i32) (i32.const 2)) (table.size $t))
      (i32.add (ref.is_null (table.get $ext (i32.const 0)))
               (ref.is_null (table.get $t (i32.const 0))))))
)
