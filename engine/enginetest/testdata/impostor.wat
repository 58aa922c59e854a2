;; The shape of small.wat with another answer: the code a planted cache
;; entry would run in place of small's (the compilation cache checks).
(module
  (memory (export "memory") 1)
  (func (export "answer") (result i32) (i32.const 666)))
