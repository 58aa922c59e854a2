;; A module with no memory.
(module (func (export "f")))
