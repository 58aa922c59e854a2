;; A Proxy-Wasm plugin (ABI 0.2.0) for the edge cases of Envoy's host
;; semantics. Its plugin configuration selects what it does; the first byte
;; is the mode:
;;
;;   'b' type:u32 start:u32 length:u32 data...  proxy_set_buffer_bytes(type,
;;       start, length, data) on the buffer of that type, from the callback
;;       that has it (request/response body, downstream/upstream data; a
;;       type >= 4 from the request body callback); logs "status <n>".
;;   'c' clen:u32 cluster timeout:u32 map...      on request headers,
;;       proxy_http_call(cluster, map, no body, no trailers, timeout); logs
;;       "status <n>" and pauses. On the call's answer (to the root context)
;;       it logs "response <headers>" and, in the stream (it sets the
;;       effective context), answers 401 "no answer\n" when the call failed
;;       (0 headers), else continues the request.
;;   'd' / 't' / 'l'  on request headers the allocator is made to call
;;       proxy_done / proxy_set_tick_period_milliseconds / proxy_log (the
;;       first two are restricted in an allocator); then a hostcall that
;;       allocates runs (proxy_get_header_map_pairs).
;;   'g'  on request headers logs "level <n>" (proxy_get_log_level) and
;;       logs "a trace line" at trace.
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_log_level" (func $level (param i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $bget (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_buffer_bytes" (func $bset (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_pairs" (func $hpairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_http_call" (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $effective (param i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_done" (func $done (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 0x100) "status ")
  (data (i32.const 0x110) "response ")
  (data (i32.const 0x120) "allocating")
  (data (i32.const 0x130) "no answer\n")
  (data (i32.const 0x140) "level ")
  (data (i32.const 0x150) "a trace line")
  (global $heap (mut i32) (i32.const 0x10000))
  (global $cfg (mut i32) (i32.const 0))
  (global $cfglen (mut i32) (i32.const 0))
  (global $amode (mut i32) (i32.const 0))
  (global $stream (mut i32) (i32.const 0))

  (func (export "proxy_abi_version_0_2_0"))

  ;; A bump allocator over the second page; it misbehaves as $amode says.
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (if (i32.eq (global.get $amode) (i32.const 0x64)) (then (drop (call $done))))
    (if (i32.eq (global.get $amode) (i32.const 0x74)) (then (drop (call $tick (i32.const 10)))))
    (if (i32.eq (global.get $amode) (i32.const 0x6c))
      (then (drop (call $log (i32.const 2) (i32.const 0x120) (i32.const 10)))))
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (if (i32.gt_u (global.get $heap) (i32.const 0x1ff00))
      (then (local.set $p (i32.const 0x10000)) (global.set $heap (i32.add (i32.const 0x10000) (local.get $size)))))
    (local.get $p))

  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (if (local.get $size) (then
      (drop (call $bget (i32.const 7) (i32.const 0) (local.get $size) (i32.const 0x80) (i32.const 0x84)))
      (global.set $cfg (i32.load (i32.const 0x80)))
      (global.set $cfglen (i32.load (i32.const 0x84)))))
    (i32.const 1))

  (func $mode (result i32)
    (if (result i32) (global.get $cfglen)
      (then (i32.load8_u (global.get $cfg)))
      (else (i32.const 0))))

  ;; lognum logs the text at $text ($tlen bytes) followed by the decimal $n
  ;; (0..999).
  (func $lognum (param $text i32) (param $tlen i32) (param $n i32)
    (local $p i32)
    (memory.copy (i32.const 0x200) (local.get $text) (local.get $tlen))
    (local.set $p (i32.add (i32.const 0x200) (local.get $tlen)))
    (if (i32.ge_u (local.get $n) (i32.const 100)) (then
      (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.div_u (local.get $n) (i32.const 100))))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))))
    (if (i32.ge_u (local.get $n) (i32.const 10)) (then
      (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (i32.div_u (local.get $n) (i32.const 10)) (i32.const 10))))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))))
    (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
    (drop (call $log (i32.const 2) (i32.const 0x200) (i32.sub (i32.add (local.get $p) (i32.const 1)) (i32.const 0x200)))))

  ;; setbuf runs the configured proxy_set_buffer_bytes if its buffer type is
  ;; $t (or $t is 0 and the type is 4 or more).
  (func $setbuf (param $t i32)
    (local $type i32)
    (if (i32.ne (call $mode) (i32.const 0x62)) (then (return)))
    (local.set $type (i32.load (i32.add (global.get $cfg) (i32.const 1))))
    (if (i32.eqz (i32.or (i32.eq (local.get $type) (local.get $t))
                         (i32.and (i32.eqz (local.get $t)) (i32.ge_u (local.get $type) (i32.const 4)))))
      (then (return)))
    (call $lognum (i32.const 0x100) (i32.const 7)
      (call $bset (local.get $type)
        (i32.load (i32.add (global.get $cfg) (i32.const 5)))
        (i32.load (i32.add (global.get $cfg) (i32.const 9)))
        (i32.add (global.get $cfg) (i32.const 13))
        (i32.sub (global.get $cfglen) (i32.const 13)))))

  (func (export "proxy_on_request_headers") (param $id i32) (param i32 i32) (result i32)
    (local $m i32) (local $clen i32) (local $map i32)
    (local.set $m (call $mode))
    (global.set $stream (local.get $id))
    (if (i32.eq (local.get $m) (i32.const 0x63)) (then
      (local.set $clen (i32.load (i32.add (global.get $cfg) (i32.const 1))))
      (local.set $map (i32.add (global.get $cfg) (i32.add (i32.const 9) (local.get $clen))))
      (call $lognum (i32.const 0x100) (i32.const 7)
        (call $call
          (i32.add (global.get $cfg) (i32.const 5)) (local.get $clen)
          (local.get $map) (i32.sub (i32.add (global.get $cfg) (global.get $cfglen)) (local.get $map))
          (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
          (i32.load (i32.add (global.get $cfg) (i32.add (i32.const 5) (local.get $clen))))
          (i32.const 0x88)))
      (return (i32.const 1))))
    (if (i32.or (i32.eq (local.get $m) (i32.const 0x64))
          (i32.or (i32.eq (local.get $m) (i32.const 0x74)) (i32.eq (local.get $m) (i32.const 0x6c)))) (then
      (global.set $amode (local.get $m))
      (drop (call $hpairs (i32.const 0) (i32.const 0x90) (i32.const 0x94)))
      (global.set $amode (i32.const 0))
      (return (i32.const 0))))
    (if (i32.eq (local.get $m) (i32.const 0x67)) (then
      (drop (call $level (i32.const 0x98)))
      (call $lognum (i32.const 0x140) (i32.const 6) (i32.load (i32.const 0x98)))
      (drop (call $log (i32.const 0) (i32.const 0x150) (i32.const 12)))))
    (i32.const 0))

  (func (export "proxy_on_http_call_response") (param $root i32) (param $token i32) (param $nh i32) (param i32 i32)
    (call $lognum (i32.const 0x110) (i32.const 9) (local.get $nh))
    (drop (call $effective (global.get $stream)))
    (if (i32.eqz (local.get $nh))
      (then (drop (call $local (i32.const 401) (i32.const 0) (i32.const 0) (i32.const 0x130) (i32.const 10)
                                (i32.const 0) (i32.const 0) (i32.const -1))))
      (else (drop (call $continue (i32.const 0))))))

  (func (export "proxy_on_new_connection") (param i32) (result i32) (i32.const 0))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (call $setbuf (i32.const 0)) (i32.const 0))
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) (call $setbuf (i32.const 1)) (i32.const 0))
  (func (export "proxy_on_downstream_data") (param i32 i32 i32) (result i32) (call $setbuf (i32.const 2)) (i32.const 0))
  (func (export "proxy_on_upstream_data") (param i32 i32 i32) (result i32) (call $setbuf (i32.const 3)) (i32.const 0)))
