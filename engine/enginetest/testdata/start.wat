;; A module whose start function traps: instantiation must fail with a trap.
(module
  (func $start unreachable)
  (start $start))
