;; A Proxy-Wasm plugin (ABI 0.2.1) that drives gRPC streams and calls, for
;; the tests of proxy_grpc_stream, proxy_grpc_send, proxy_grpc_close and
;; proxy_grpc_cancel (the Go SDK has no gRPC). The host gives it commands
;; with Plugin.CallForeignFunction (proxy_on_foreign_function on the root
;; context; the function id is the command, buffer type 8 its arguments):
;;
;;   1 open    len:u8 cluster method  proxy_grpc_stream(cluster,
;;             "anywasm.Echo", method, {x-in: a}); logs "stream <status> <token>"
;;   2 send    token:u32 end:u8 msg   proxy_grpc_send; logs "send <token> <status>"
;;   3 close   token:u32              proxy_grpc_close; logs "grpc_close <token> <status>"
;;   4 cancel  token:u32              proxy_grpc_cancel; logs "grpc_cancel <token> <status>"
;;   5 call    len:u8 cluster method  proxy_grpc_call(cluster, "anywasm.Echo",
;;             method, {}, "ping", 5000 ms); logs "call <status> <token>"
;;
;; On request headers it opens a stream to grpc-backend anywasm.Echo/Chat
;; (as command 1), sends "one" and "two" (end_stream) and pauses; each
;; message received on that stream is added to the request as header
;; x-grpc-msg, and its close continues the request (status 0) or answers
;; 502 "grpc failed\n" (any other status, or a stream that did not open).
;;
;; It logs every gRPC callback with its token and sizes:
;;   "on_initial_metadata <token> <elements> k=<value of k, or ->"
;;   "on_receive <token> <size> <message>"
;;   "on_trailing_metadata <token> <elements>"
;;   "on_close <token> <status> <proxy_get_status message>"
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $bget (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $hget (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_status" (func $status (param i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_call" (func $grpc_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_stream" (func $grpc_stream (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_send" (func $grpc_send (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_close" (func $grpc_close (param i32) (result i32)))
  (import "env" "proxy_grpc_cancel" (func $grpc_cancel (param i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $effective (param i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $hadd (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 0x10) "anywasm.Echo")
  (data (i32.const 0x20) "ping")
  (data (i32.const 0x28) "k")
  ;; the initial metadata {x-in: a}: 1 pair, key 4 bytes, value 1 byte
  (data (i32.const 0x40) "\01\00\00\00\04\00\00\00\01\00\00\00x-in\00a\00")
  (data (i32.const 0x60) "\00\00\00\00") ;; an empty map
  (data (i32.const 0x100) "stream ")
  (data (i32.const 0x108) "send ")
  (data (i32.const 0x110) "grpc_close ")
  (data (i32.const 0x120) "grpc_cancel ")
  (data (i32.const 0x130) "call ")
  (data (i32.const 0x140) "on_initial_metadata ")
  (data (i32.const 0x160) "on_receive ")
  (data (i32.const 0x170) "on_trailing_metadata ")
  (data (i32.const 0x190) "on_close ")
  (data (i32.const 0x1a0) " k=")
  (data (i32.const 0x1b0) "grpc-backend")
  (data (i32.const 0x1c0) "Chat")
  (data (i32.const 0x1c8) "one")
  (data (i32.const 0x1cc) "two")
  (data (i32.const 0x1d0) "x-grpc-msg")
  (data (i32.const 0x1e0) "grpc failed\n")
  (global $heap (mut i32) (i32.const 0x10000))
  (global $line (mut i32) (i32.const 0x800)) ;; the end of the line being built at 0x800
  (global $http (mut i32) (i32.const 0)) ;; the HTTP stream waiting for the stream $htoken
  (global $htoken (mut i32) (i32.const 0))

  (func (export "proxy_abi_version_0_2_1"))
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

  ;; put appends $n bytes at $p to the line (at most 0x700 of them).
  (func $put (param $p i32) (param $n i32)
    (local.set $n (select (local.get $n) (i32.const 0x700) (i32.lt_u (local.get $n) (i32.const 0x700))))
    (memory.copy (global.get $line) (local.get $p) (local.get $n))
    (global.set $line (i32.add (global.get $line) (local.get $n))))
  ;; putnum appends the decimal $n.
  (func $putnum (param $n i32)
    (local $p i32)
    (local.set $p (i32.const 0x7f0)) ;; digits are made backwards below 0x7f0
    (loop $digits
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digits (local.get $n)))
    (call $put (local.get $p) (i32.sub (i32.const 0x7f0) (local.get $p))))
  (func $space (i32.store8 (global.get $line) (i32.const 32)) (global.set $line (i32.add (global.get $line) (i32.const 1))))
  ;; flush logs the line at info and starts another.
  (func $flush
    (drop (call $log (i32.const 2) (i32.const 0x800) (i32.sub (global.get $line) (i32.const 0x800))))
    (global.set $line (i32.const 0x800)))

  (func (export "proxy_on_foreign_function") (param $root i32) (param $id i32) (param $size i32)
    (local $a i32) (local $n i32) (local $st i32)
    (drop (call $bget (i32.const 8) (i32.const 0) (local.get $size) (i32.const 0x30) (i32.const 0x34)))
    (local.set $a (i32.load (i32.const 0x30)))
    (local.set $n (i32.load (i32.const 0x34)))
    (i32.store (i32.const 0x38) (i32.const 0))
    (if (i32.or (i32.eq (local.get $id) (i32.const 1)) (i32.eq (local.get $id) (i32.const 5))) (then
      ;; cluster at a+1 (len a[0]), method after it
      (if (i32.eq (local.get $id) (i32.const 1))
        (then
          (local.set $st (call $grpc_stream
            (i32.add (local.get $a) (i32.const 1)) (i32.load8_u (local.get $a))
            (i32.const 0x10) (i32.const 12)
            (i32.add (i32.add (local.get $a) (i32.const 1)) (i32.load8_u (local.get $a)))
            (i32.sub (i32.sub (local.get $n) (i32.const 1)) (i32.load8_u (local.get $a)))
            (i32.const 0x40) (i32.const 19) (i32.const 0x38)))
          (call $put (i32.const 0x100) (i32.const 7)))
        (else
          (local.set $st (call $grpc_call
            (i32.add (local.get $a) (i32.const 1)) (i32.load8_u (local.get $a))
            (i32.const 0x10) (i32.const 12)
            (i32.add (i32.add (local.get $a) (i32.const 1)) (i32.load8_u (local.get $a)))
            (i32.sub (i32.sub (local.get $n) (i32.const 1)) (i32.load8_u (local.get $a)))
            (i32.const 0x60) (i32.const 4) (i32.const 0x20) (i32.const 4) (i32.const 5000) (i32.const 0x38)))
          (call $put (i32.const 0x130) (i32.const 5))))
      (call $putnum (local.get $st)) (call $space) (call $putnum (i32.load (i32.const 0x38))) (call $flush)
      (return)))
    (if (i32.eq (local.get $id) (i32.const 2)) (then
      (local.set $st (call $grpc_send (i32.load (local.get $a)) (i32.add (local.get $a) (i32.const 5))
        (i32.sub (local.get $n) (i32.const 5)) (i32.load8_u (i32.add (local.get $a) (i32.const 4)))))
      (call $put (i32.const 0x108) (i32.const 5))))
    (if (i32.eq (local.get $id) (i32.const 3)) (then
      (local.set $st (call $grpc_close (i32.load (local.get $a))))
      (call $put (i32.const 0x110) (i32.const 11))))
    (if (i32.eq (local.get $id) (i32.const 4)) (then
      (local.set $st (call $grpc_cancel (i32.load (local.get $a))))
      (call $put (i32.const 0x120) (i32.const 12))))
    (call $putnum (i32.load (local.get $a))) (call $space) (call $putnum (local.get $st)) (call $flush))

  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (global.set $http (local.get $ctx))
    (if (call $grpc_stream (i32.const 0x1b0) (i32.const 12) (i32.const 0x10) (i32.const 12)
          (i32.const 0x1c0) (i32.const 4) (i32.const 0x40) (i32.const 19) (i32.const 0x3c))
      (then (call $fail) (return (i32.const 1))))
    (global.set $htoken (i32.load (i32.const 0x3c)))
    (drop (call $grpc_send (global.get $htoken) (i32.const 0x1c8) (i32.const 3) (i32.const 0)))
    (drop (call $grpc_send (global.get $htoken) (i32.const 0x1cc) (i32.const 3) (i32.const 1)))
    (i32.const 1))
  (func $fail
    (drop (call $local (i32.const 502) (i32.const 0) (i32.const 0) (i32.const 0x1e0) (i32.const 12)
      (i32.const 0x60) (i32.const 4) (i32.const 14))))

  (func (export "proxy_on_grpc_receive_initial_metadata") (param $root i32) (param $token i32) (param $n i32)
    (call $put (i32.const 0x140) (i32.const 20))
    (call $putnum (local.get $token)) (call $space) (call $putnum (local.get $n))
    (call $put (i32.const 0x1a0) (i32.const 3))
    (if (i32.eqz (call $hget (i32.const 4) (i32.const 0x28) (i32.const 1) (i32.const 0x30) (i32.const 0x34)))
      (then (call $put (i32.load (i32.const 0x30)) (i32.load (i32.const 0x34))))
      (else (i32.store8 (global.get $line) (i32.const 45)) (global.set $line (i32.add (global.get $line) (i32.const 1)))))
    (call $flush))
  (func (export "proxy_on_grpc_receive") (param $root i32) (param $token i32) (param $size i32)
    (call $put (i32.const 0x160) (i32.const 11))
    (call $putnum (local.get $token)) (call $space) (call $putnum (local.get $size)) (call $space)
    (i32.store (i32.const 0x34) (i32.const 0))
    (drop (call $bget (i32.const 5) (i32.const 0) (local.get $size) (i32.const 0x30) (i32.const 0x34)))
    (call $put (i32.load (i32.const 0x30)) (i32.load (i32.const 0x34)))
    (call $flush)
    (if (i32.and (i32.ne (global.get $http) (i32.const 0)) (i32.eq (local.get $token) (global.get $htoken))) (then
      (drop (call $effective (global.get $http)))
      (drop (call $hadd (i32.const 0) (i32.const 0x1d0) (i32.const 10) (i32.load (i32.const 0x30)) (i32.load (i32.const 0x34)))))))
  (func (export "proxy_on_grpc_receive_trailing_metadata") (param $root i32) (param $token i32) (param $n i32)
    (call $put (i32.const 0x170) (i32.const 21))
    (call $putnum (local.get $token)) (call $space) (call $putnum (local.get $n))
    (call $flush))
  (func (export "proxy_on_grpc_close") (param $root i32) (param $token i32) (param $code i32)
    (call $put (i32.const 0x190) (i32.const 9))
    (call $putnum (local.get $token)) (call $space) (call $putnum (local.get $code)) (call $space)
    (i32.store (i32.const 0x34) (i32.const 0))
    (drop (call $status (i32.const 0x3c) (i32.const 0x30) (i32.const 0x34)))
    (call $put (i32.load (i32.const 0x30)) (i32.load (i32.const 0x34)))
    (call $flush)
    (if (i32.and (i32.ne (global.get $http) (i32.const 0)) (i32.eq (local.get $token) (global.get $htoken))) (then
      (drop (call $effective (global.get $http)))
      (if (local.get $code) (then (call $fail)) (else (drop (call $continue (i32.const 0))))))))
)
