;; The guest of abi's FuzzHostcalls (ABI 0.2.0): it imports every hostcall
;; anywasm implements and, in proxy_on_request_body, runs the program the
;; request body holds: a sequence of hostcalls with arguments the fuzzer
;; chose, each checked for what it did to guest memory. The program is
;; fetched with proxy_get_buffer_bytes, so the host places it through the
;; allocator, which bumps from 0x1000 (reset in each callback): it lands at
;; 0x1000. hostcalls_fuzz_test.go (hostcallsProgram) writes the programs;
;; its fuzzCalls lists the imports below in their order.
;;
;; Memory (3 pages at first, at most 6):
;;   0x00000-0x0ffff  live: 0x100-0x4ff scratch for out-parameters,
;;                    0x500-0x5ff the nested op's out-parameters,
;;                    0x1000-0xffff the heap of the bump allocator
;;   0x10000-0x1ffff  shadow: a copy of live taken before each hostcall
;;   0x20000-0x2ffff  private: the report (0x20000), the allocator's
;;                    messages (0x21000), the call arities (0x21100), the
;;                    program's location (0x21200), a copy of the op being
;;                    run (0x21300: the call may rewrite the program) and
;;                    of the nested op (0x21400)
;;
;; Program (little-endian): u32 magic "fuzz", u32 op count, the ops, then
;; data the ops point at. An op is u8 call (the index of its import below;
;; 100: set the allocator's mode), u8 argument count, u16 mask of 4-byte
;; out-parameters, u16 mask of 8-byte ones, u8 index of the argument that
;; is a ret_ptr and u8 of its ret_size (0xff: none), then one u64 per
;; argument (i32 arguments use the low half). Mode op arguments: the mode
;; (1 the next allocation returns 0, 2 returns a pointer outside memory,
;; 3 runs the op at the second argument first, from inside the allocator,
;; 4 grows memory by a page first) and the op's address. Each misbehaviour
;; is announced with proxy_log ("FUZZALLOC ..."), so that the test can tell
;; a documented failure from a host's.
;;
;; After each hostcall the guest compares live with the shadow: a byte may
;; change only inside what the allocator handed out during the call (not the
;; alignment padding before it), inside the 4- or 8-byte windows of the
;; call's out-parameters, and inside the nested op's scratch if one ran. With a ret pair, a call answering OK
;; must have written a pointer into what it allocated (or 0 for size 0).
;; The first violation stops the program. At the end the report is logged:
;; "FUZZREPORT", then u32s at 0x20010: ops run, program base, program size,
;; flags (1: the allocator was asked for 0 bytes; 2: the program ended
;; early, malformed), violating op (-1: none), kind (1 memory, 2 ret pair),
;; address (or ret pointer), ret size; then per op 6 u32: call, status, the
;; start and end of what the allocator handed out during the call (0, 0:
;; nothing), pages before, 0.
(module
  (import "env" "proxy_log" (func $h0 (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_log_level" (func $h1 (param i32) (result i32)))
  (import "env" "proxy_get_current_time_nanoseconds" (func $h2 (param i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $h3 (param i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $h4 (param i32) (result i32)))
  (import "env" "proxy_done" (func $h5 (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $h6 (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_buffer_bytes" (func $h7 (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_status" (func $h8 (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_size" (func $h9 (param i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_pairs" (func $h10 (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_header_map_pairs" (func $h11 (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $h12 (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $h13 (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value" (func $h14 (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_remove_header_map_value" (func $h15 (param i32 i32 i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $h16 (param i32) (result i32)))
  (import "env" "proxy_close_stream" (func $h17 (param i32) (result i32)))
  (import "env" "proxy_continue_request" (func $h18 (result i32)))
  (import "env" "proxy_continue_response" (func $h19 (result i32)))
  (import "env" "proxy_clear_route_cache" (func $h20 (result i32)))
  (import "env" "proxy_get_status" (func $h21 (param i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $h22 (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_http_call" (func $h23 (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_call" (func $h24 (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $h25 (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_shared_data" (func $h26 (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_register_shared_queue" (func $h27 (param i32 i32 i32) (result i32)))
  (import "env" "proxy_resolve_shared_queue" (func $h28 (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_enqueue_shared_queue" (func $h29 (param i32 i32 i32) (result i32)))
  (import "env" "proxy_dequeue_shared_queue" (func $h30 (param i32 i32 i32) (result i32)))
  (import "env" "proxy_define_metric" (func $h31 (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_record_metric" (func $h32 (param i32 i64) (result i32)))
  (import "env" "proxy_increment_metric" (func $h33 (param i32 i64) (result i32)))
  (import "env" "proxy_get_metric" (func $h34 (param i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $h35 (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_property" (func $h36 (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_call_foreign_function" (func $h37 (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_configuration" (func $h38 (param i32 i32) (result i32)))
  (import "env" "proxy_grpc_stream" (func $h39 (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_send" (func $h40 (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_close" (func $h41 (param i32) (result i32)))
  (import "env" "proxy_grpc_cancel" (func $h42 (param i32) (result i32)))

  (memory (export "memory") 3 6)
  (data (i32.const 0x20000) "FUZZREPORT")
  (data (i32.const 0x21000) "FUZZALLOC zero")
  (data (i32.const 0x21020) "FUZZALLOC outside")
  (data (i32.const 0x21040) "FUZZALLOC nested")
  (data (i32.const 0x21060) "FUZZALLOC exhausted")
  (data (i32.const 0x21100) "\03\01\01\01\01\00\05\05\03\02\03\03\05\05\05\03\01\01\00\00\00\03\08\0a\0c\05\05\03\05\03\03\04\02\02\02\04\04\06\02\09\04\01\01")

  (global $heap (mut i32) (i32.const 0x1000))
  (global $mode (mut i32) (i32.const 0))
  (global $nested (mut i32) (i32.const 0))
  (global $nested_ran (mut i32) (i32.const 0))
  (global $prog (mut i32) (i32.const 0))
  (global $prog_end (mut i32) (i32.const 0))
  ;; what the allocator handed out during the current hostcall: [$alo, $ahi)
  (global $alo (mut i32) (i32.const 0))
  (global $ahi (mut i32) (i32.const 0))

  (func (export "proxy_abi_version_0_2_0"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))

  (func $say (param $msg i32) (param $len i32)
    (drop (call $h0 (i32.const 2) (local.get $msg) (local.get $len))))

  (func $flag (param $f i32)
    (i32.store (i32.const 0x2001c) (i32.or (i32.load (i32.const 0x2001c)) (local.get $f))))

  ;; The bump allocator, with the misbehaviours the program asks for (one
  ;; allocation each).
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $m i32) (local $p i32)
    (if (i32.eqz (local.get $size)) (then (call $flag (i32.const 1))))
    (local.set $m (global.get $mode))
    (global.set $mode (i32.const 0))
    (if (i32.eq (local.get $m) (i32.const 1)) (then
      (call $say (i32.const 0x21000) (i32.const 14))
      (return (i32.const 0))))
    (if (i32.eq (local.get $m) (i32.const 2)) (then
      (call $say (i32.const 0x21020) (i32.const 17))
      (return (i32.const 0xffffff00))))
    (if (i32.eq (local.get $m) (i32.const 3)) (then
      (if (call $valid (global.get $nested)) (then
        (call $say (i32.const 0x21040) (i32.const 16))
        (global.set $nested_ran (i32.const 1))
        ;; run a copy, guarded: the program may have been rewritten
        (memory.copy (i32.const 0x21400) (global.get $nested) (i32.add (i32.const 8) (i32.shl (i32.load8_u offset=1 (global.get $nested)) (i32.const 3))))
        (call $guard (i32.const 0x21400) (i32.const 1))
        (drop (call $op (i32.const 0x21400)))))))
    (if (i32.eq (local.get $m) (i32.const 4)) (then
      (drop (memory.grow (i32.const 1)))))
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (if (i64.gt_u (i64.add (i64.extend_i32_u (local.get $p)) (i64.extend_i32_u (local.get $size))) (i64.const 0x10000)) (then
      (call $say (i32.const 0x21060) (i32.const 19))
      (return (i32.const 0))))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    (if (i32.lt_u (local.get $p) (global.get $alo)) (then (global.set $alo (local.get $p))))
    (if (i32.gt_u (global.get $heap) (global.get $ahi)) (then (global.set $ahi (global.get $heap))))
    (local.get $p))

  ;; $valid: the op at $at is a hostcall whose arguments lie inside the
  ;; program (a hostcall may have rewritten the program: it was asked to).
  (func $valid (param $at i32) (result i32)
    (local $n i32)
    (if (i32.lt_u (local.get $at) (global.get $prog)) (then (return (i32.const 0))))
    (if (i64.gt_u (i64.add (i64.extend_i32_u (local.get $at)) (i64.const 8)) (i64.extend_i32_u (global.get $prog_end))) (then (return (i32.const 0))))
    (if (i32.ge_u (i32.load8_u (local.get $at)) (i32.const 43)) (then (return (i32.const 0))))
    (local.set $n (i32.load8_u offset=1 (local.get $at)))
    (if (i32.ne (local.get $n) (i32.load8_u (i32.add (i32.const 0x21100) (i32.load8_u (local.get $at))))) (then (return (i32.const 0))))
    (i64.le_u (i64.add (i64.extend_i32_u (local.get $at)) (i64.extend_i32_u (i32.add (i32.const 8) (i32.shl (local.get $n) (i32.const 3)))))
      (i64.extend_i32_u (global.get $prog_end))))

  ;; $a and $l: argument $i of the op at $at, as i32 and as i64.
  (func $a (param $at i32) (param $i i32) (result i32)
    (i32.load offset=8 (i32.add (local.get $at) (i32.shl (local.get $i) (i32.const 3)))))
  (func $l (param $at i32) (param $i i32) (result i64)
    (i64.load offset=8 (i32.add (local.get $at) (i32.shl (local.get $i) (i32.const 3)))))

  ;; $op makes the hostcall of the (valid) op at $at and returns its status.
  (func $op (param $at i32) (result i32)
    (block $bad
    (block $c42
    (block $c41
    (block $c40
    (block $c39
    (block $c38
    (block $c37
    (block $c36
    (block $c35
    (block $c34
    (block $c33
    (block $c32
    (block $c31
    (block $c30
    (block $c29
    (block $c28
    (block $c27
    (block $c26
    (block $c25
    (block $c24
    (block $c23
    (block $c22
    (block $c21
    (block $c20
    (block $c19
    (block $c18
    (block $c17
    (block $c16
    (block $c15
    (block $c14
    (block $c13
    (block $c12
    (block $c11
    (block $c10
    (block $c9
    (block $c8
    (block $c7
    (block $c6
    (block $c5
    (block $c4
    (block $c3
    (block $c2
    (block $c1
    (block $c0
      (br_table $c0 $c1 $c2 $c3 $c4 $c5 $c6 $c7 $c8 $c9 $c10 $c11 $c12 $c13 $c14 $c15 $c16 $c17 $c18 $c19 $c20 $c21 $c22 $c23 $c24 $c25 $c26 $c27 $c28 $c29 $c30 $c31 $c32 $c33 $c34 $c35 $c36 $c37 $c38 $c39 $c40 $c41 $c42 $bad (i32.load8_u (local.get $at))))
      (return (call $h0 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)) (call $a (local.get $at) (i32.const 2)))))  ;; proxy_log
      (return (call $h1 (call $a (local.get $at) (i32.const 0)))))  ;; proxy_get_log_level
      (return (call $h2 (call $a (local.get $at) (i32.const 0)))))  ;; proxy_get_current_time_nanoseconds
      (return (call $h3 (call $a (local.get $at) (i32.const 0)))))  ;; proxy_set_tick_period_milliseconds
      (return (call $h4 (call $a (local.get $at) (i32.const 0)))))  ;; proxy_set_effective_context
      (return (call $h5)))  ;; proxy_done
      (return (call $h6 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)) (call $a (local.get $at) (i32.const 2)) (call $a (local.get $at) (i32.const 3)) (call $a (local.get $at) (i32.const 4)))))  ;; proxy_get_buffer_bytes
      (return (call $h7 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)) (call $a (local.get $at) (i32.const 2)) (call $a (local.get $at) (i32.const 3)) (call $a (local.get $at) (i32.const 4)))))  ;; proxy_set_buffer_bytes
      (return (call $h8 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)) (call $a (local.get $at) (i32.const 2)))))  ;; proxy_get_buffer_status
      (return (call $h9 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)))))  ;; proxy_get_header_map_size
      (return (call $h10 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)) (call $a (local.get $at) (i32.const 2)))))  ;; proxy_get_header_map_pairs
      (return (call $h11 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)) (call $a (local.get $at) (i32.const 2)))))  ;; proxy_set_header_map_pairs
      (return (call $h12 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)) (call $a (local.get $at) (i32.const 2)) (call $a (local.get $at) (i32.const 3)) (call $a (local.get $at) (i32.const 4)))))  ;; proxy_get_header_map_value
      (return (call $h13 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)) (call $a (local.get $at) (i32.const 2)) (call $a (local.get $at) (i32.const 3)) (call $a (local.get $at) (i32.const 4)))))  ;; proxy_add_header_map_value
      (return (call $h14 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)) (call $a (local.get $at) (i32.const 2)) (call $a (local.get $at) (i32.const 3)) (call $a (local.get $at) (i32.const 4)))))  ;; proxy_replace_header_map_value
      (return (call $h15 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)) (call $a (local.get $at) (i32.const 2)))))  ;; proxy_remove_header_map_value
      (return (call $h16 (call $a (local.get $at) (i32.const 0)))))  ;; proxy_continue_stream
      (return (call $h17 (call $a (local.get $at) (i32.const 0)))))  ;; proxy_close_stream
      (return (call $h18)))  ;; proxy_continue_request
      (return (call $h19)))  ;; proxy_continue_response
      (return (call $h20)))  ;; proxy_clear_route_cache
      (return (call $h21 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)) (call $a (local.get $at) (i32.const 2)))))  ;; proxy_get_status
      (return (call $h22 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)) (call $a (local.get $at) (i32.const 2)) (call $a (local.get $at) (i32.const 3)) (call $a (local.get $at) (i32.const 4)) (call $a (local.get $at) (i32.const 5)) (call $a (local.get $at) (i32.const 6)) (call $a (local.get $at) (i32.const 7)))))  ;; proxy_send_local_response
      (return (call $h23 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)) (call $a (local.get $at) (i32.const 2)) (call $a (local.get $at) (i32.const 3)) (call $a (local.get $at) (i32.const 4)) (call $a (local.get $at) (i32.const 5)) (call $a (local.get $at) (i32.const 6)) (call $a (local.get $at) (i32.const 7)) (call $a (local.get $at) (i32.const 8)) (call $a (local.get $at) (i32.const 9)))))  ;; proxy_http_call
      (return (call $h24 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)) (call $a (local.get $at) (i32.const 2)) (call $a (local.get $at) (i32.const 3)) (call $a (local.get $at) (i32.const 4)) (call $a (local.get $at) (i32.const 5)) (call $a (local.get $at) (i32.const 6)) (call $a (local.get $at) (i32.const 7)) (call $a (local.get $at) (i32.const 8)) (call $a (local.get $at) (i32.const 9)) (call $a (local.get $at) (i32.const 10)) (call $a (local.get $at) (i32.const 11)))))  ;; proxy_grpc_call
      (return (call $h25 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)) (call $a (local.get $at) (i32.const 2)) (call $a (local.get $at) (i32.const 3)) (call $a (local.get $at) (i32.const 4)))))  ;; proxy_set_shared_data
      (return (call $h26 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)) (call $a (local.get $at) (i32.const 2)) (call $a (local.get $at) (i32.const 3)) (call $a (local.get $at) (i32.const 4)))))  ;; proxy_get_shared_data
      (return (call $h27 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)) (call $a (local.get $at) (i32.const 2)))))  ;; proxy_register_shared_queue
      (return (call $h28 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)) (call $a (local.get $at) (i32.const 2)) (call $a (local.get $at) (i32.const 3)) (call $a (local.get $at) (i32.const 4)))))  ;; proxy_resolve_shared_queue
      (return (call $h29 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)) (call $a (local.get $at) (i32.const 2)))))  ;; proxy_enqueue_shared_queue
      (return (call $h30 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)) (call $a (local.get $at) (i32.const 2)))))  ;; proxy_dequeue_shared_queue
      (return (call $h31 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)) (call $a (local.get $at) (i32.const 2)) (call $a (local.get $at) (i32.const 3)))))  ;; proxy_define_metric
      (return (call $h32 (call $a (local.get $at) (i32.const 0)) (call $l (local.get $at) (i32.const 1)))))  ;; proxy_record_metric
      (return (call $h33 (call $a (local.get $at) (i32.const 0)) (call $l (local.get $at) (i32.const 1)))))  ;; proxy_increment_metric
      (return (call $h34 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)))))  ;; proxy_get_metric
      (return (call $h35 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)) (call $a (local.get $at) (i32.const 2)) (call $a (local.get $at) (i32.const 3)))))  ;; proxy_get_property
      (return (call $h36 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)) (call $a (local.get $at) (i32.const 2)) (call $a (local.get $at) (i32.const 3)))))  ;; proxy_set_property
      (return (call $h37 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)) (call $a (local.get $at) (i32.const 2)) (call $a (local.get $at) (i32.const 3)) (call $a (local.get $at) (i32.const 4)) (call $a (local.get $at) (i32.const 5)))))  ;; proxy_call_foreign_function
      (return (call $h38 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)))))  ;; proxy_get_configuration
      (return (call $h39 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)) (call $a (local.get $at) (i32.const 2)) (call $a (local.get $at) (i32.const 3)) (call $a (local.get $at) (i32.const 4)) (call $a (local.get $at) (i32.const 5)) (call $a (local.get $at) (i32.const 6)) (call $a (local.get $at) (i32.const 7)) (call $a (local.get $at) (i32.const 8)))))  ;; proxy_grpc_stream
      (return (call $h40 (call $a (local.get $at) (i32.const 0)) (call $a (local.get $at) (i32.const 1)) (call $a (local.get $at) (i32.const 2)) (call $a (local.get $at) (i32.const 3)))))  ;; proxy_grpc_send
      (return (call $h41 (call $a (local.get $at) (i32.const 0)))))  ;; proxy_grpc_close
      (return (call $h42 (call $a (local.get $at) (i32.const 0)))))  ;; proxy_grpc_cancel
    (i32.const -1))

  ;; $width is the width of argument $i of the op at $at if it is an
  ;; out-parameter (4 or 8), else 0.
  (func $width (param $at i32) (param $i i32) (result i64)
    (if (i32.and (i32.shr_u (i32.load16_u offset=2 (local.get $at)) (local.get $i)) (i32.const 1)) (then (return (i64.const 4))))
    (if (i32.and (i32.shr_u (i32.load16_u offset=4 (local.get $at)) (local.get $i)) (i32.const 1)) (then (return (i64.const 8))))
    (i64.const 0))

  ;; $guard moves each out-parameter of the op at $at to the guest's own
  ;; scratch if it points where hostcallsProgram never points one: for a
  ;; nested op ($nested_op) anywhere outside 0x500-0x5ff, for another into
  ;; 0x10000-0x21fff (the shadow, the report, the op's copy). The program
  ;; as written obeys that already; an earlier call that wrote into the
  ;; program (an out-parameter pointing there) may have changed it.
  (func $guard (param $at i32) (param $nested_op i32)
    (local $i i32) (local $n i32) (local $p i64) (local $w i64) (local $move i32) (local $to i64)
    (local.set $n (i32.load8_u offset=1 (local.get $at)))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $w (call $width (local.get $at) (local.get $i)))
      (local.set $p (i64.extend_i32_u (call $a (local.get $at) (local.get $i))))
      (if (local.get $nested_op)
        (then
          (local.set $move (i32.or (i64.lt_u (local.get $p) (i64.const 0x500))
                                   (i64.gt_u (i64.add (local.get $p) (local.get $w)) (i64.const 0x600))))
          (local.set $to (i64.add (i64.const 0x500) (i64.mul (i64.rem_u (local.get $p) (i64.const 0x1f)) (i64.const 8)))))
        (else
          (local.set $move (i32.and (i64.gt_u (i64.add (local.get $p) (local.get $w)) (i64.const 0x10000))
                                    (i64.lt_u (local.get $p) (i64.const 0x22000))))
          (local.set $to (i64.add (i64.const 0x100) (i64.mul (i64.rem_u (local.get $p) (i64.const 0xfc)) (i64.const 4))))))
      (if (i32.and (i64.ne (local.get $w) (i64.const 0)) (local.get $move))
        (then (i64.store offset=8 (i32.add (local.get $at) (i32.shl (local.get $i) (i32.const 3))) (local.get $to))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next))))

  ;; $allowed: a change at $addr during the op at $at is the host's right:
  ;; inside what it allocated ($hb to $ha: from the first allocation's start
;; to the last one's end), an out-parameter's window, or
  ;; the nested op's scratch.
  (func $allowed (param $at i32) (param $addr i32) (param $hb i32) (param $ha i32) (result i32)
    (local $i i32) (local $n i32) (local $d i64)
    (if (i32.and (i32.ge_u (local.get $addr) (local.get $hb)) (i32.lt_u (local.get $addr) (local.get $ha))) (then (return (i32.const 1))))
    (if (i32.and (global.get $nested_ran) (i32.and (i32.ge_u (local.get $addr) (i32.const 0x500)) (i32.lt_u (local.get $addr) (i32.const 0x600)))) (then (return (i32.const 1))))
    (local.set $n (i32.load8_u offset=1 (local.get $at)))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $d (i64.sub (i64.extend_i32_u (local.get $addr)) (i64.extend_i32_u (call $a (local.get $at) (local.get $i)))))
      (if (i32.and (i32.shr_u (i32.load16_u offset=2 (local.get $at)) (local.get $i)) (i32.const 1)) (then
        (if (i64.lt_u (local.get $d) (i64.const 4)) (then (return (i32.const 1))))))
      (if (i32.and (i32.shr_u (i32.load16_u offset=4 (local.get $at)) (local.get $i)) (i32.const 1)) (then
        (if (i64.lt_u (local.get $d) (i64.const 8)) (then (return (i32.const 1))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i32.const 0))

  ;; $violation records the first violation (op $k, kind, two words).
  (func $violation (param $k i32) (param $kind i32) (param $x i32) (param $y i32)
    (i32.store (i32.const 0x20020) (local.get $k))
    (i32.store (i32.const 0x20024) (local.get $kind))
    (i32.store (i32.const 0x20028) (local.get $x))
    (i32.store (i32.const 0x2002c) (local.get $y)))

  ;; $check looks at what op $k (at $at, status $st) did; 0 when it broke
  ;; a rule (recorded).
  (func $check (param $k i32) (param $at i32) (param $st i32) (param $hb i32) (param $ha i32) (result i32)
    (local $i i32) (local $j i32) (local $pp i32) (local $ps i32) (local $ptr i32) (local $size i32) (local $top i64)
    (block $done (loop $word
      (br_if $done (i32.ge_u (local.get $i) (i32.const 0x10000)))
      (if (i64.ne (i64.load (local.get $i)) (i64.load offset=0x10000 (local.get $i))) (then
        (local.set $j (i32.const 0))
        (block $bytes_done (loop $byte
          (br_if $bytes_done (i32.ge_u (local.get $j) (i32.const 8)))
          (if (i32.ne (i32.load8_u (i32.add (local.get $i) (local.get $j))) (i32.load8_u offset=0x10000 (i32.add (local.get $i) (local.get $j)))) (then
            (if (i32.eqz (call $allowed (local.get $at) (i32.add (local.get $i) (local.get $j)) (local.get $hb) (local.get $ha))) (then
              (call $violation (local.get $k) (i32.const 1) (i32.add (local.get $i) (local.get $j)) (i32.const 0))
              (return (i32.const 0))))))
          (local.set $j (i32.add (local.get $j) (i32.const 1)))
          (br $byte)))))
      (local.set $i (i32.add (local.get $i) (i32.const 8)))
      (br $word)))
    ;; the ret pair of a call that answered OK
    (local.set $pp (i32.load8_u offset=6 (local.get $at)))
    (local.set $ps (i32.load8_u offset=7 (local.get $at)))
    (if (i32.or (local.get $st) (i32.or (i32.ge_u (local.get $pp) (i32.load8_u offset=1 (local.get $at))) (i32.ge_u (local.get $ps) (i32.load8_u offset=1 (local.get $at))))) (then (return (i32.const 1))))
    (local.set $top (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
    (local.set $pp (call $a (local.get $at) (local.get $pp)))
    (local.set $ps (call $a (local.get $at) (local.get $ps)))
    (if (i32.or (i64.gt_u (i64.add (i64.extend_i32_u (local.get $pp)) (i64.const 4)) (local.get $top)) (i64.gt_u (i64.add (i64.extend_i32_u (local.get $ps)) (i64.const 4)) (local.get $top))) (then
      (call $violation (local.get $k) (i32.const 2) (local.get $pp) (local.get $ps))
      (return (i32.const 0))))
    (local.set $ptr (i32.load (local.get $pp)))
    (local.set $size (i32.load (local.get $ps)))
    (if (i32.eqz (local.get $size)) (then
      (if (local.get $ptr) (then
        (call $violation (local.get $k) (i32.const 2) (local.get $ptr) (local.get $size))
        (return (i32.const 0))))
      (return (i32.const 1))))
    (if (i32.or (i32.lt_u (local.get $ptr) (local.get $hb))
          (i64.gt_u (i64.add (i64.extend_i32_u (local.get $ptr)) (i64.extend_i32_u (local.get $size))) (i64.extend_i32_u (local.get $ha)))) (then
      (call $violation (local.get $k) (i32.const 2) (local.get $ptr) (local.get $size))
      (return (i32.const 0))))
    (i32.const 1))

  ;; $run runs the program at $prog; returns the number of ops run.
  (func $run (result i32)
    (local $pc i32) (local $k i32) (local $count i32) (local $n i32) (local $hb i32) (local $ha i32) (local $pages i32) (local $st i32) (local $e i32)
    (if (i32.lt_u (i32.sub (global.get $prog_end) (global.get $prog)) (i32.const 8)) (then (call $flag (i32.const 2)) (return (i32.const 0))))
    (if (i32.ne (i32.load (global.get $prog)) (i32.const 0x7a7a7566)) (then (call $flag (i32.const 2)) (return (i32.const 0))))
    (local.set $count (i32.load offset=4 (global.get $prog)))
    (if (i32.gt_u (local.get $count) (i32.const 48)) (then (local.set $count (i32.const 48))))
    (local.set $pc (i32.add (global.get $prog) (i32.const 8)))
    (block $end (loop $next
      (br_if $end (i32.ge_u (local.get $k) (local.get $count)))
      (local.set $e (i32.add (i32.const 0x20030) (i32.mul (local.get $k) (i32.const 24))))
      (if (i32.eq (i32.load8_u (local.get $pc)) (i32.const 100)) (then
        ;; set the allocator's mode
        (if (i64.gt_u (i64.add (i64.extend_i32_u (local.get $pc)) (i64.const 24)) (i64.extend_i32_u (global.get $prog_end))) (then (call $flag (i32.const 2)) (br $end)))
        (if (i32.ne (i32.load8_u offset=1 (local.get $pc)) (i32.const 2)) (then (call $flag (i32.const 2)) (br $end)))
        (global.set $mode (call $a (local.get $pc) (i32.const 0)))
        (global.set $nested (call $a (local.get $pc) (i32.const 1)))
        (i32.store (local.get $e) (i32.const 100))
        (i32.store offset=4 (local.get $e) (i32.const 0))
        (i32.store offset=8 (local.get $e) (i32.const 0))
        (i32.store offset=12 (local.get $e) (i32.const 0))
        (i32.store offset=16 (local.get $e) (memory.size))
        (i32.store offset=20 (local.get $e) (i32.const 0))
        (local.set $pc (i32.add (local.get $pc) (i32.const 24)))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $next)))
      (if (i32.eqz (call $valid (local.get $pc))) (then (call $flag (i32.const 2)) (br $end)))
      (local.set $n (i32.load8_u offset=1 (local.get $pc)))
      ;; run a copy: the call may rewrite the program, this op included
      (memory.copy (i32.const 0x21300) (local.get $pc) (i32.add (i32.const 8) (i32.shl (local.get $n) (i32.const 3))))
      (call $guard (i32.const 0x21300) (i32.const 0))
      (memory.copy (i32.const 0x10000) (i32.const 0) (i32.const 0x10000))
      (global.set $alo (i32.const -1))
      (global.set $ahi (i32.const 0))
      (local.set $pages (memory.size))
      (global.set $nested_ran (i32.const 0))
      (local.set $st (call $op (i32.const 0x21300)))
      (local.set $hb (global.get $alo))
      (local.set $ha (global.get $ahi))
      (if (i32.eq (local.get $hb) (i32.const -1)) (then (local.set $hb (i32.const 0))))
      (i32.store (local.get $e) (i32.load8_u (i32.const 0x21300)))
      (i32.store offset=4 (local.get $e) (local.get $st))
      (i32.store offset=8 (local.get $e) (local.get $hb))
      (i32.store offset=12 (local.get $e) (local.get $ha))
      (i32.store offset=16 (local.get $e) (local.get $pages))
      (i32.store offset=20 (local.get $e) (i32.const 0))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br_if $end (i32.eqz (call $check (i32.sub (local.get $k) (i32.const 1)) (i32.const 0x21300) (local.get $st) (local.get $hb) (local.get $ha))))
      (local.set $pc (i32.add (local.get $pc) (i32.add (i32.const 8) (i32.shl (local.get $n) (i32.const 3)))))
      (br $next)))
    (local.get $k))

  (func (export "proxy_on_request_body") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
    (local $n i32)
    (global.set $heap (i32.const 0x1000))
    (global.set $mode (i32.const 0))
    (global.set $prog (i32.const 0))
    (global.set $prog_end (i32.const 0))
    (memory.fill (i32.const 0x20010) (i32.const 0) (i32.const 0x20))
    (i32.store (i32.const 0x20020) (i32.const -1))
    (i32.store (i32.const 0x21200) (i32.const 0))
    (i32.store (i32.const 0x21204) (i32.const 0))
    (if (i32.eqz (call $h6 (i32.const 0) (i32.const 0) (local.get $size) (i32.const 0x21200) (i32.const 0x21204))) (then
      (global.set $prog (i32.load (i32.const 0x21200)))
      (global.set $prog_end (i32.add (global.get $prog) (i32.load (i32.const 0x21204))))
      (i32.store (i32.const 0x20014) (global.get $prog))
      (i32.store (i32.const 0x20018) (i32.load (i32.const 0x21204)))
      (if (i32.load (i32.const 0x21204)) (then (local.set $n (call $run))))))
    (i32.store (i32.const 0x20010) (local.get $n))
    (call $say (i32.const 0x20000) (i32.add (i32.const 0x30) (i32.mul (local.get $n) (i32.const 24))))
    (i32.const 0))
)
