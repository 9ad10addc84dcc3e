"Tensor types and the shape rules of each tensor op, shared by staging and the C renderer.

Shapes are fixed when a program is staged. A tensor read from a data loader is `batched`:
its first dimension is the loader's batch size at most, and the number of rows of the
current batch at run time (the last batch may be short). `batched` is a tag naming the
loop the rows come from; it follows the rows through every op.

  (dot-type (TensorType #(50 784)) (TensorType #(64 784) :batched \"b\"))
  ; => (TensorType #(64 50) :batched \"b\")

Rules raise ShapeError with a message for the user."

(import math)


(defclass ShapeError [ValueError]
  "A tensor op's operands do not fit.")


(defclass TensorType []
  "Shape (a tuple of ints), dtype (\"float32\" or \"int64\") and batch tag of a tensor."
  (defn __init__ [self shape [dtype "float32"] [batched None]]
    (setv self.shape (tuple shape) self.dtype dtype self.batched batched))

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


(defn _batch [#* types]
  "The batch tag of a result: that of its batched operands, which must agree."
  (setv tags (sfor t types :if t.batched t.batched))
  (when (> (len tags) 1)
    (raise (ShapeError "operands come from different data loader loops")))
  (if tags (next (iter tags)) None))


(defn _float [t what]
  (when (!= t.dtype "float32")
    (raise (ShapeError f"{what} needs a float32 tensor, got {(show t)}"))))


(defn _dim [dim ndim what]
  "`dim` as a non-negative axis of an `ndim`-dimensional tensor."
  (setv d (if (< dim 0) (+ dim ndim) dim))
  (when (not (<= 0 d (- ndim 1)))
    (raise (ShapeError f"{what}: dim {dim} is out of range for a {ndim}-dimensional tensor")))
  d)


(defn dot-type [w x]
  "`(dot W X)`: a Linear layer without its bias, X[..., in] @ W[out, in]^T."
  (_float w "a Linear weight") (_float x "a Linear layer")
  (when (or (!= w.ndim 2) w.batched)
    (raise (ShapeError f"a Linear weight must be a 2-D parameter, got {(show w)}")))
  (when (or (< x.ndim 1) (!= (get x.shape -1) (get w.shape 1)))
    (raise (ShapeError f"Linear layer expects inputs with {(get w.shape 1)} features, got {(show x)}")))
  (TensorType #(#* (cut x.shape 0 -1) (get w.shape 0)) "float32" x.batched))


(defn elementwise-type [a b what]
  "`(+ A B)` and friends: equal shapes, a row vector broadcast over rows, or a scalar."
  (setv batched (_batch a b)
        dtype (if (= a.dtype b.dtype) a.dtype "float32"))
  (cond (= a.shape b.shape) (TensorType a.shape dtype batched)
        (= b.shape #()) (TensorType a.shape dtype batched)
        (= a.shape #()) (TensorType b.shape dtype batched)
        (and (= b.ndim 1) (>= a.ndim 2) (= (get a.shape -1) (get b.shape 0)) (not b.batched))
          (TensorType a.shape dtype batched)
        (and (= a.ndim 1) (>= b.ndim 2) (= (get b.shape -1) (get a.shape 0)) (not a.batched))
          (TensorType b.shape dtype batched)
        True (raise (ShapeError f"cannot {what} tensors of shapes {(show a)} and {(show b)}"))))


(defn unary-type [x what]
  (_float x what)
  x)


(defn last-dim-type [x dim what]
  "log_softmax / softmax along `dim`, which must be the last dimension and not the batch."
  (_float x what)
  (setv d (_dim dim x.ndim what))
  (when (and x.batched (= d 0))
    (raise (ShapeError f"{what} over the batch dimension (dim {dim}) is not supported")))
  (when (!= d (- x.ndim 1))
    (raise (ShapeError f"{what} is supported along the last dimension only, got dim {dim} of {(show x)}")))
  x)


(defn nll-loss-type [logp target]
  (_float logp "nll_loss")
  (when (or (!= logp.ndim 2) (!= target.ndim 1) (!= target.dtype "int64")
            (!= (get logp.shape 0) (get target.shape 0)))
    (raise (ShapeError (+ "nll_loss expects log-probabilities [N, C] and int64 targets [N], got "
                          f"{(show logp)} and {(show target)}"))))
  (_batch logp target)
  (TensorType #() "float32"))


(defn mse-loss-type [x target]
  (_float x "mse_loss") (_float target "mse_loss")
  (when (!= x.shape target.shape)
    (raise (ShapeError f"mse_loss needs equal shapes, got {(show x)} and {(show target)}")))
  (_batch x target)
  (TensorType #() "float32"))


(defn reduce-type [x what]
  "`sum`/`mean` of a whole tensor: a 0-dimensional tensor."
  (when (and (= what "mean") (!= x.dtype "float32"))
    (raise (ShapeError f"mean needs a float32 tensor, got {(show x)}")))
  (TensorType #() x.dtype))


(defn argmax-type [x dim]
  (setv d (_dim dim x.ndim "argmax"))
  (when (!= d (- x.ndim 1))
    (raise (ShapeError f"argmax is supported along the last dimension only, got dim {dim}")))
  (TensorType (cut x.shape 0 -1) "int64" x.batched))


(defn view-type [x dims]
  "`(call X view (DIMS))`: the same elements in a new shape; one dim may be -1."
  (setv dims (list dims)
        unknown (lfor [i d] (enumerate dims) :if (= d -1) i))
  (when (or (> (len unknown) 1) (any (gfor d dims (< d -1))))
    (raise (ShapeError f"view {dims}: at most one dimension may be -1, the rest must be sizes")))
  (setv known (math.prod (gfor d dims :if (!= d -1) d)))
  (when unknown
    (when (or (= known 0) (% x.numel known))
      (raise (ShapeError f"view {dims} does not fit {x.numel} elements of {(show x)}")))
    (setv (get dims (get unknown 0)) (// x.numel known)))
  (when (!= (math.prod dims) x.numel)
    (raise (ShapeError f"view {dims} does not fit {x.numel} elements of {(show x)}")))
  (when (and x.batched (or (not dims) (!= (get dims 0) (get x.shape 0))))
    (raise (ShapeError (+ f"view {dims} of {(show x)} would mix rows of a batch; keep the first "
                          "dimension (the batch) as it is, e.g. (.view x -1 784)"))))
  (TensorType dims x.dtype x.batched))


(defn flatten-dims [x start]
  "The dims `torch.flatten x start` gives, for a view."
  (setv d (_dim start (max x.ndim 1) "flatten"))
  [#* (cut x.shape 0 d) (math.prod (cut x.shape d None))])


(defn compare-type [a b]
  (setv t (elementwise-type a b "compare"))
  (TensorType t.shape "int64" t.batched))
