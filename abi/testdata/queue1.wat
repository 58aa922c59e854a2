;; queue1.wat: a shared queue's receiver that dequeues one item per
;; proxy_on_queue_ready, as the Go SDK's shared_queue example does. Its root
;; context registers queue "q"; proxy_on_request_headers enqueues "a" then
;; "b"; proxy_on_queue_ready dequeues one item and logs it (info). Envoy
;; (proxy-wasm-cpp-host's SharedQueue::enqueue) calls proxy_on_queue_ready
;; once per enqueued item, so both items are logged.
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_register_shared_queue" (func $register (param i32 i32 i32) (result i32)))
  (import "env" "proxy_enqueue_shared_queue" (func $enqueue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_dequeue_shared_queue" (func $dequeue (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (data (i32.const 16) "q")
  (data (i32.const 20) "a")
  (data (i32.const 24) "b")
  ;; 32: the queue id; 40, 44: a dequeued item's pointer and size
  (func (export "proxy_abi_version_0_2_0"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (i32.eqz (call $register (i32.const 16) (i32.const 1) (i32.const 32))))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $enqueue (i32.load (i32.const 32)) (i32.const 20) (i32.const 1)))
    (drop (call $enqueue (i32.load (i32.const 32)) (i32.const 24) (i32.const 1)))
    (i32.const 0))
  (func (export "proxy_on_queue_ready") (param i32 i32)
    (if (i32.eqz (call $dequeue (local.get 1) (i32.const 40) (i32.const 44)))
      (then (drop (call $log (i32.const 2) (i32.load (i32.const 40)) (i32.load (i32.const 44))))))))
