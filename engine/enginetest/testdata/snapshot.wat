;; A module for snapshots (engine.SnapshotProbe): a start function and an
;; initializer that change mutable globals of every numeric type and memory
;; (and grow it), calling env.hit each time; an immutable global; a table
;; the initializer calls through; "state" reads it all back.
(module
  (import "env" "hit" (func $hit (param i32)))
  (type $v (func))
  (memory (export "memory") 1 8)
  (global $count (mut i32) (i32.const 0))
  (global $wide (mut i64) (i64.const -1))
  (global $half (mut f32) (f32.const 1.5))
  (global $full (mut f64) (f64.const -2.25))
  (global $fixed i32 (i32.const 77))
  (table 2 funcref)
  (elem (i32.const 1) $bump)
  (data (i32.const 100) "seed")
  (func $bump
    (global.set $count (i32.add (global.get $count) (i32.const 1))))
  (func $start
    (call $hit (i32.const 1))
    (call_indirect (type $v) (i32.const 1))
    (i32.store8 (i32.const 104) (i32.const 33)))
  (start $start)
  (func (export "_initialize")
    (call $hit (i32.const 2))
    (call_indirect (type $v) (i32.const 1))
    (global.set $wide (i64.const 0x123456789abcdef0))
    (global.set $half (f32.const -0.5))
    (global.set $full (f64.const 1e300))
    (drop (memory.grow (i32.const 2)))
    ;; a byte far away (its own data segment) and a run with a short gap
    (i32.store (i32.const 180000) (i32.const 0xdeadbeef))
    (i32.store8 (i32.const 200) (i32.const 1))
    (i32.store8 (i32.const 210) (i32.const 2)))
  (func (export "main") (param i32 i32) (result i32)
    (call $hit (i32.const 3))
    (i32.const 9))
  (func (export "state") (result i32 i64 f32 f64 i32)
    global.get $count
    global.get $wide
    global.get $half
    global.get $full
    global.get $fixed))
