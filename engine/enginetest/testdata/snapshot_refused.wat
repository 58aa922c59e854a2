;; A module a snapshot refuses: a passive data segment.
(module
  (memory (export "memory") 1)
  (data "passive")
  (func (export "_initialize")
    (memory.init 0 (i32.const 0) (i32.const 0) (i32.const 7))))
