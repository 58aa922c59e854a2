;; A Proxy-Wasm plugin (ABI 0.2.0) that reads attributes: on request
;; headers it calls proxy_get_property for each path of the table at 0x400
;; (count at 0x3fc; entries of pointer and length), trapping on any status
;; but OK, then continues. Its
;; allocator is a bump allocator reset at every proxy_on_context_create, so
;; the guest itself allocates nothing that grows. For BenchmarkProperties
;; and TestPropertyAllocs: what reading attributes costs the host.
(module
  (import "env" "proxy_get_property" (func $get (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  ;; paths, NUL-separated segments
  (data (i32.const 0x100) "request\00path")          ;; 12
  (data (i32.const 0x120) "request\00method")        ;; 14
  (data (i32.const 0x140) "request\00host")          ;; 12
  (data (i32.const 0x160) "source\00address")        ;; 14
  (data (i32.const 0x180) "request\00time")          ;; 12
  (data (i32.const 0x1a0) "plugin_name")             ;; 11
  (data (i32.const 0x1c0) "connection\00id")         ;; 13
  (data (i32.const 0x1e0) "request\00headers\00x-request-id") ;; 28
  (data (i32.const 0x200) "request\00headers")      ;; 15: the whole map
  (data (i32.const 0x3fc) "\09\00\00\00")
  (data (i32.const 0x400)
    "\00\01\00\00\0c\00\00\00" "\20\01\00\00\0e\00\00\00" "\40\01\00\00\0c\00\00\00" "\60\01\00\00\0e\00\00\00"
    "\80\01\00\00\0c\00\00\00" "\a0\01\00\00\0b\00\00\00" "\c0\01\00\00\0d\00\00\00" "\e0\01\00\00\1c\00\00\00"
    "\00\02\00\00\0f\00\00\00")
  (global $heap (mut i32) (i32.const 0x10000))
  (func (export "proxy_abi_version_0_2_0"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (i32.and (i32.add (local.get $size) (i32.const 7)) (i32.const -8))))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32)
    (global.set $heap (i32.const 0x10000)))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $i i32) (local $e i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (i32.load (i32.const 0x3fc))))
        (local.set $e (i32.add (i32.const 0x400) (i32.shl (local.get $i) (i32.const 3))))
        (if (call $get (i32.load (local.get $e)) (i32.load offset=4 (local.get $e)) (i32.const 0x80) (i32.const 0x84))
          (then unreachable))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 0))
)
