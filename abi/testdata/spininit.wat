;; A plugin whose initializer never returns: a CallTimeout must end it.
(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "_initialize")
    (loop $forever (br $forever))))
