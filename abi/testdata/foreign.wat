;; A Proxy-Wasm plugin (ABI 0.2.0) with a proxy_on_foreign_function: it
;; reads the call's arguments (buffer type 8, FOREIGN_FUNCTION_ARGUMENTS)
;; and logs them at info, then logs the status of reading buffer type 8
;; outside such a call (from proxy_on_request_headers: "status <n>").
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $bget (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 0x100) "status ")
  (global $heap (mut i32) (i32.const 0x10000))

  (func (export "proxy_abi_version_0_2_0"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (if (i32.gt_u (global.get $heap) (i32.const 0x1ff00))
      (then (local.set $p (i32.const 0x10000)) (global.set $heap (i32.add (i32.const 0x10000) (local.get $size)))))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))

  (func (export "proxy_on_foreign_function") (param $root i32) (param $id i32) (param $size i32)
    (drop (call $bget (i32.const 8) (i32.const 0) (local.get $size) (i32.const 0x200) (i32.const 0x204)))
    (drop (call $log (i32.const 2) (i32.load (i32.const 0x200)) (i32.load (i32.const 0x204)))))

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $st i32)
    (local.set $st (call $bget (i32.const 8) (i32.const 0) (i32.const 10) (i32.const 0x200) (i32.const 0x204)))
    (i32.store8 (i32.const 0x107) (i32.add (i32.const 0x30) (local.get $st)))
    (drop (call $log (i32.const 2) (i32.const 0x100) (i32.const 8)))
    (i32.const 0)))
