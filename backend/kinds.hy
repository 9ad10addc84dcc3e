"The kinds of staged values and how they join where paths meet, shared by the type pass
(infer.hy) and the renderer.

A number is \"int\", \"float\" or \"bool\"; a string constant \"str\"; a cell holds numbers
of one kind or tensors of one type (TensorCellKind).

  (join-kinds \"int\" \"float\")   ; => \"float\""

(import hytorch.backend.c-out [C-TYPES]
        hytorch.ir.types :as shapes
        hytorch.errors [IRError])


(defclass KindConflict [IRError]
  "Two paths give a value (or a cell) kinds that do not join.")


(defclass TensorCellKind []
  "The type of a cell that holds tensors: their TensorType, and whether any value set into
  it depends on a trainable variable."
  (defn __init__ [self ttype requires-grad]
    (setv self.ttype ttype self.requires-grad requires-grad))
  (defn __eq__ [self other]
    (and (isinstance other TensorCellKind)
         (= #(self.ttype self.requires-grad) #(other.ttype other.requires-grad))))
  (defn __hash__ [self] (hash #(self.ttype self.requires-grad)))
  (defn __repr__ [self] f"TensorCellKind({self.ttype !r}, {self.requires-grad})"))


(defn join-kinds [a b]
  "The type of a value that may be `a` or `b`: (join-kinds \"int\" \"float\") => \"float\""
  (cond (is a None) b
        (is b None) a
        (= a b) a
        (and (in a C-TYPES) (in b C-TYPES)) (if (in "float" #(a b)) "float" "int")
        True (raise (KindConflict f"a value is {a} on one path and {b} on another"))))


(defn join-cell-kinds [a b]
  "The type of a cell set to values of types `a` and `b` (see join-kinds): tensors join only
  with tensors of the same shape and dtype."
  (cond (is a None) b
        (is b None) a
        (and (isinstance a TensorCellKind) (isinstance b TensorCellKind))
          (if (= a.ttype b.ttype)
            (TensorCellKind a.ttype (or a.requires-grad b.requires-grad))
            (raise (KindConflict (+ f"a cell holds a {(shapes.show a.ttype)} tensor and a "
                                    f"{(shapes.show b.ttype)} one: it keeps one shape and dtype"))))
        (or (isinstance a TensorCellKind) (isinstance b TensorCellKind))
          (raise (KindConflict "a cell holds a tensor and a number: it keeps one kind of value"))
        True (join-kinds a b)))


(defn arithmetic-kind [op a b]
  "The kind of `(OP A B)` of numbers of kinds `a` and `b` (a bool counts as an int), or None
  when it has none (`**` of ints is multiplied out by staging)."
  (setv kind (join-kinds (if (= a "bool") "int" a) (if (= b "bool") "int" b)))
  (cond (in op #("+" "-" "*" "//" "%")) kind
        (= op "/") "float"
        (= kind "float") "float"
        True None))


(defn bitwise-kind [op a b]
  "The kind of Python's `& | ^ << >>` of ints and bools: a shift is an int, bool & bool a bool."
  (if (and (not-in op #("<<" ">>")) (= a b "bool")) "bool" "int"))
