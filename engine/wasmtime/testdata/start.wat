;; A start function whose host function uses the caller's memory and exports
;; before instantiation returns.
(module
  (import "env" "init" (func $init))
  (memory (export "memory") 1)
  (func (export "seven") (result i32) (i32.const 7))
  (func $start (call $init))
  (start $start))
