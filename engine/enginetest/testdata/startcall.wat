;; A module whose start function calls the host.
(module
  (import "env" "started" (func $started (param i32)))
  (func $start (call $started (i32.const 42)))
  (start $start))
