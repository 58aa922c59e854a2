;; A module that needs 100 pages (6.25 MiB) of memory at start.
(module (memory (export "memory") 100))
