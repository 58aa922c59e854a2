;; A module whose memory the guest grows: the GC ballast follows it.
(module
  (memory (export "memory") 1)
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))
