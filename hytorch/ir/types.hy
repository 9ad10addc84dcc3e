"Tensor types, shared by staging and the C renderer; each op's shape rule is in ops.hy.

Shapes are fixed when a program is staged. A tensor read from a data loader is `batched`:
its first dimension is the loader's batch size at most, and the number of rows of the
current batch at run time (the last batch may be short). `batched` is a tag naming the
loop the rows come from; it follows the rows through every op.

  (TensorType #(64 784) :batched \"b\")   ; a batch of at most 64 rows of 784 floats

Shape rules raise ShapeError with a message for the user."

(import math)

;; The bytes of an element of each tensor element type.
(setv ELEMENT-BYTES {"float32" 4 "int64" 8 "uint8" 1})
;; No tensor, and no program's scratch memory, may take more bytes than this (256 TiB): sizes
;; stay far from where C's 64-bit byte counts wrap around, and no machine allocates it anyway.
(setv MAX-BYTES (** 2 48))


(defclass ShapeError [ValueError]
  "A tensor op's operands do not fit.")


(defclass TensorType []
  "Shape (a tuple of ints), dtype (\"float32\" or \"int64\") and batch tag of a tensor."
  (defn __init__ [self shape [dtype "float32"] [batched None]]
    (setv self.shape (tuple shape) self.dtype dtype self.batched batched)
    (when (and (all (gfor d self.shape (isinstance d int))) (in dtype ELEMENT-BYTES))
      (setv bytes (* self.numel (get ELEMENT-BYTES dtype)))
      (when (> bytes MAX-BYTES)
        (raise (ShapeError (+ f"a tensor of shape {(list self.shape)} {dtype} would take "
                              f"{bytes} bytes, more than the {MAX-BYTES} a tensor may"))))))

  (defn [property] numel [self] (math.prod self.shape))
  (defn [property] ndim [self] (len self.shape))

  (defn __eq__ [self other]
    (and (isinstance other TensorType)
         (= #(self.shape self.dtype self.batched) #(other.shape other.dtype other.batched))))

  (defn __hash__ [self] (hash #(self.shape self.dtype self.batched)))

  (defn __repr__ [self]
    (+ f"TensorType({self.shape}, {self.dtype}"
       (if self.batched f", batched={self.batched !r})" ")"))))


(defn show [t]
  "How a tensor type reads in an error message: [64, 784] float32 (batched)."
  (setv dims (.join ", " (map str t.shape)))
  (+ f"[{dims}] {t.dtype}" (if t.batched " (rows from a data loader)" "")))


(defclass ListType []
  "A list of tensors of one TensorType whose length is known only at run time: a staged
  function's parameter, read with `(len XS)` and `(nth XS I)`.

  (ListType (TensorType #(4 16)))   ; any number of [4, 16] float32 tensors"
  (defn __init__ [self element]
    (setv self.element element))

  (defn __eq__ [self other]
    (and (isinstance other ListType) (= self.element other.element)))

  (defn __hash__ [self] (hash #("list" self.element)))

  (defn __repr__ [self] f"ListType({self.element !r})"))
