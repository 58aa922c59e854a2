;; A plugin for the load/close cycle test (TestLoadCloseCycles): small, but
;; it leaves in the host every kind of state a plugin and a stream can, so
;; that whatever is not released on close shows up over many cycles. Its
;; initializer writes to stdout (WASI); proxy_on_configure reads its
;; configuration, logs it, defines a metric, sets shared data, registers a
;; shared queue and asks for ticks (an hour apart: they never fire in a
;; test); a stream sets a property, reads :path and adds it back as
;; x-lifecycle, and counts itself in the metric. Any hostcall that does not
;; answer OK traps (unreachable), so the test sees it. An empty configuration
;; refuses the plugin (proxy_on_configure answers false), after the ticks and
;; the queue were set up.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_define_metric" (func $define_metric (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $increment_metric (param i32 i64) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_register_shared_queue" (func $register_queue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))
  (import "env" "proxy_set_property" (func $set_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  ;; 0: returned pointer, 4: returned size, 8: metric id, 12: queue id,
  ;; 16: iovec for fd_write, 24: bytes written
  (data (i32.const 16) "\40\00\00\00\0c\00\00\00")
  (data (i32.const 64) "initialized\n")
  (data (i32.const 128) "lifecycle_streams")
  (data (i32.const 160) "lifecycle")
  (data (i32.const 192) "lifecycle_queue")
  (data (i32.const 224) "lifecycle_prop")
  (data (i32.const 256) ":path")
  (data (i32.const 272) "x-lifecycle")
  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_abi_version_0_2_1"))
  ;; A bump allocator that starts over when the memory's second page is
  ;; full: what the host hands over is used at once and never kept.
  (func (export "malloc") (param $size i32) (result i32)
    (local $p i32)
    (if (i32.gt_u (i32.add (global.get $heap) (local.get $size)) (i32.const 131072))
      (then (global.set $heap (i32.const 4096))))
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $size)) (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func $ok (param i32)
    (if (local.get 0) (then unreachable)))
  (func (export "_initialize")
    (call $ok (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24))))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (if (local.get $size) (then
      (call $ok (call $get_buffer (i32.const 7) (i32.const 0) (local.get $size) (i32.const 0) (i32.const 4)))
      (call $ok (call $log (i32.const 2) (i32.load (i32.const 0)) (i32.load (i32.const 4))))
      (call $ok (call $set_shared (i32.const 160) (i32.const 9) (i32.load (i32.const 0)) (i32.load (i32.const 4)) (i32.const 0)))))
    (call $ok (call $define_metric (i32.const 0) (i32.const 128) (i32.const 17) (i32.const 8)))
    (call $ok (call $register_queue (i32.const 192) (i32.const 15) (i32.const 12)))
    (call $ok (call $tick (i32.const 3600000)))
    (i32.ne (local.get $size) (i32.const 0)))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $ok (call $set_property (i32.const 224) (i32.const 14) (i32.const 256) (i32.const 5)))
    (call $ok (call $get_header (i32.const 0) (i32.const 256) (i32.const 5) (i32.const 0) (i32.const 4)))
    (call $ok (call $add_header (i32.const 0) (i32.const 272) (i32.const 11) (i32.load (i32.const 0)) (i32.load (i32.const 4))))
    (call $ok (call $increment_metric (i32.load (i32.const 8)) (i64.const 1)))
    (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32)))
