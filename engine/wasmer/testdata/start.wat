;; A start function that calls the host, which may fail.
(module
  (import "env" "hook" (func $hook (param i32)))
  (func $start (call $hook (i32.const 7)))
  (start $start)
  (func (export "nop")))
