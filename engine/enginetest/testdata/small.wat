;; The smallest useful module: one page of memory and one function, no imports.
(module
  (memory (export "memory") 1)
  (func (export "answer") (result i32) (i32.const 42)))
