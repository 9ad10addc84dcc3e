"The `defstaged` macro."

(defmacro defstaged [_hy_compiler name params #* body]
  "Define NAME like `defn`. Called with ordinary values it is the plain function; called
  while staging (`hytorch.stage`, `hytorch.lms-compile`) it emits IR: control flow on staged
  values becomes `if`/`while`/`for_dataloader`, and ordinary code runs at generation time.

    (require hytorch [defstaged])
    (defstaged power [b x]
      (if (= x 0) 1 (* b (power b (- x 1)))))
    (power 2 3)                                ; => 8
    (str (hytorch.lms-compile (fn [n] (power n 3))))
    ; => \"(def <lambda> (in) (begin (begin (let x0 (* in 1) ...))))\""
  (hy.I.hytorch/macros/rewrite.expand-defstaged _hy_compiler name params body))
