"The staging tour: a Hy function, its IR, its C, and a call of the compiled code.

  hy examples/power.hy     # or: python -m hytorch.examples.power"

(require hytorch [defstaged])
(import hytorch)

(defstaged power [b x]
  "b to the x; with a constant x the recursion unrolls at generation time."
  (if (= x 0)
      1
      (* b (power b (- x 1)))))

(defstaged power3 [n]
  (power n 3))

(defstaged count-up [n]
  "A loop on a staged bound: `x` becomes a cell (new/set/get) and the loop an IR while."
  (setv x 0)
  (while (< x n)
    (setv x (+ x 1)))
  x)

(defstaged collatz-steps [n]
  "Staged if inside a staged while, printing as it goes."
  (setv steps 0)
  (while (!= n 1)
    (setv n (if (= (% n 2) 0) (// n 2) (+ (* 3 n) 1)))
    (setv steps (+ steps 1)))
  (print (.format "{} steps" steps))
  steps)

(defn main []
  (for [f [power3 count-up collatz-steps]]
    (setv compiled (hytorch.stage f))
    (print f"==== {f.__name__}: IR")
    (print compiled.ir)
    (print f"==== {f.__name__}: C")
    (print compiled.c-source)
    (print f"==== {f.__name__}: calls")
    (print f"{f.__name__}(27): eager {(f 27)}, compiled {(compiled 27)}")))

(when (= __name__ "__main__")
  (main))
