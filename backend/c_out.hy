"What rendering one let's right-hand side gives the C renderer."

(import numpy
        hytorch.ir.syntax [print-ir])

;; The C type of each kind of number a staged value may be.
(setv C-TYPES {"int" "int64_t" "float" "double" "bool" "int"})


(defclass Out []
  "C statements, then a C expression of `type` for the let to bind (None for a statement),
  or `declared` when the statements declare it; `info` is kept on the binding (a tensor's
  type, a loader's sizes, ...)."
  (defn __init__ [self lines expr type [declared False] [info None]]
    (setv self.lines lines self.expr expr self.type type self.declared declared
          self.info (or info {}))))


(defn indent [lines]
  (lfor l lines (+ "  " l)))


(defn excerpt [node]
  "An IR node's text, cut to fit an error message."
  (setv text (print-ir node))
  (if (> (len text) 70) (+ (cut text 0 67) "...") text))


(defn c-double [x]
  "A C double constant of `x`, NaN and infinities too: (c-double 0.1) => \"0.1\",
  (c-double (float \"-inf\")) => \"(-INFINITY)\""
  (setv x (float x))
  (cond (!= x x) "NAN"
        (= x (float "inf")) "INFINITY"
        (= x (float "-inf")) "(-INFINITY)"
        True (repr x)))


(defn c-float [x]
  "A C float constant of `x` rounded to float32 once, as torch rounds a Python number that
  meets float32 tensors (the shortest decimal of a double is not always rounded to the same
  float32 by the C compiler: 1 + 2**-24 is): (c-float 0.0005) => \"0.0005f\""
  (with [_ (numpy.errstate :over "ignore")]  ; beyond float32's range: an infinity, as in torch
    (setv x (numpy.float32 x)))
  (if (numpy.isfinite x) (+ (str x) "f") (c-double x)))


(defn c-comment [text]
  "A C comment holding `text` that no text can end early: printable ASCII only (others
  become `.`), `*/` broken up. (c-comment \"gradient of a*/b\") => \"/* gradient of a* /b */\""
  (setv safe (.join "" (gfor c text (if (<= 32 (ord c) 126) c "."))))
  f"/* {(.replace safe "*/" "* /")} */")
