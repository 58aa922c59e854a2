;; A plugin for capability restriction (PluginConfig.AllowedCapabilities,
;; Envoy's capability_restriction_config). proxy_on_vm_start calls an env
;; hostcall (proxy_set_tick_period_milliseconds) and a WASI function
;; (random_get) and logs what they returned; when random_get answers
;; ENOTCAPABLE it also calls proc_exit, which, restricted, returns. It
;; logs "configured" from proxy_on_configure.
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "tick=0")
  (data (i32.const 32) "tick=10")
  (data (i32.const 48) "random=0")
  (data (i32.const 64) "random=76")
  (data (i32.const 80) "after proc_exit")
  (data (i32.const 96) "configured")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func $say (param $ptr i32) (param $len i32)
    (drop (call $log (i32.const 2) (local.get $ptr) (local.get $len))))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (local $r i32)
    (local.set $r (call $tick (i32.const 1000)))
    (if (i32.eqz (local.get $r)) (then (call $say (i32.const 16) (i32.const 6))))
    (if (i32.eq (local.get $r) (i32.const 10)) (then (call $say (i32.const 32) (i32.const 7))))
    (local.set $r (call $random (i32.const 512) (i32.const 8)))
    (if (i32.eqz (local.get $r)) (then (call $say (i32.const 48) (i32.const 8))))
    (if (i32.eq (local.get $r) (i32.const 76))
      (then
        (call $say (i32.const 64) (i32.const 9))
        (call $exit (i32.const 3))
        (call $say (i32.const 80) (i32.const 15))))
    (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (call $say (i32.const 96) (i32.const 10))
    (i32.const 1)))
