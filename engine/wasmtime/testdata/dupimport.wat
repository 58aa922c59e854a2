;; Guest for the backend's own tests: a module that imports the same host
;; function twice, as Go's wasip1 port does with some WASI functions.
(module
  (import "env" "count" (func $a (param i32)))
  (import "env" "count" (func $b (param i32)))
  (func (export "call_a") (call $a (i32.const 1)))
  (func (export "call_b") (call $b (i32.const 2))))
