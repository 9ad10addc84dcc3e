"The IR's tensor ops, each declared once, in `OPS`.

An `Op` entry is everything about one op `(call NAME (INPUTS... ATTRS...))`: the torch
callables it stands for, how a torch call's arguments become its operands, its shape and dtype
rule, the C kernels that compute it and its gradient as IR, in terms of other ops of the table
(backward kernels are ops too: `relu_grad` runs ht_relu_bwd). The front end
(hytorch/tensors.py) stages torch calls with it, backend/c_tensor.hy renders the kernel calls
and backend/grad.hy builds the backward pass from the gradients.

  (.result-type (get OPS \"log_softmax\") [(TensorType #(64 10))] [1])
  ; => TensorType((64, 10), float32)
  (.gradients (get OPS \"relu\") (Sym \"g0\") (Sym \"y\") [(Sym \"x\")])
  ; => [[Sym('call'), Sym('relu_grad'), [Sym('g0'), Sym('y')]]]

A kernel call is a Hy form such as `(ht_relu_fwd out x (numel x))`: the kernel's name, then
its arguments, in these words:

  out                           the result's storage
  aux                           the result's auxiliary buffer (an op with `aux`, see Op)
  NAME                          an operand: a tensor's storage (NULL for an absent optional
                                input), an attribute as a C constant
  (aux Y)                       the auxiliary buffer of Y, the result of an op with `aux`
  (numel X) (rows X) (cols X)   X's element count; X seen as a matrix over its last dim
  (planes X)                    X seen as a stack of matrices over its last two dims: how many
  (dim X I)                     X's size along dimension I (I < 0 counts from the end; I may
                                name an attribute); the rows of the current batch for
                                dimension 0 of a batched X
  (outer X I) (inner X I)       the product of X's sizes before dimension I, after it
  (item X)                      the one element of a 0-dimensional tensor X
  (workspace (KERNEL WORDS...)) scratch floats from the arena, as many as the C function
                                KERNEL returns for those arguments (ht_conv2d_workspace)
  rng                           the program's splitmix64 state for random masks (dropout):
                                one per program, seeded with DROPOUT-SEED (c_tensor.hy) when
                                the program state is made, advancing from call to call
                                (a state slot of role \"rng\", for the caller to reseed)
  NULL, numbers                 themselves
  (check CALL)                  (the whole call) a kernel returning a status: HT_OK or fail

An entry's `stage` may hand a torch call to another op (`Delegate`): `torch.sum` with a dim
is `sum_dim`. A gradient may be `gy` itself (adding a constant).

The ops with no kernels here (`dot`, `+ - *` of tensors, `==` and `view`) are written as
their own IR nodes and rendered and differentiated by bespoke code, because the first layer's
forward is pipelined with the previous step and the gradients of a Linear layer's weight and
bias are fused with SGD's step (backend/c_tensor.hy, c_data.hy, c_train.hy, grad.hy). The
table still holds their shape rules and the torch functions they stand for."

(import math
        hy.models [Expression Symbol Integer Float]
        hytorch.ir.syntax [Sym real-number?]
        hytorch.ir.types [TensorType ShapeError show])

(setv CALL (Sym "call")
      FLOAT32-MAX 3.4028234663852886e38)


(defclass Unsupported [ValueError]
  "A torch call that staging does not support; the message says what is.")


(defclass Identity []
  "What an entry's `stage` returns for a torch call that is its input itself, no op at all
  (dropout in eval mode): (Identity x)"
  (defn __init__ [self x] (setv self.x x)))


(defclass Delegate []
  "What an entry's `stage` returns for a torch call that another op of the table computes:
  `(Delegate \"sum_dim\" x 1 False)` stages `(call sum_dim (x 1 False))`. An operand may be a
  Delegate itself, staged first: `torch.clamp` with both bounds is a clamp_max of a clamp_min."
  (defn __init__ [self name #* operands] (setv self.name name self.operands operands)))


(defn unsupported [message]
  (raise (Unsupported message)))


(defn call [name #* operands]
  "The IR node `(call NAME (OPERANDS...))`: (call \"relu_grad\" gy y)"
  [CALL (Sym name) (list operands)])


(defn plain [form]
  "A kernel-call form as IR data (lists, Sym, numbers), which compares with plain strings:
  (plain '(ht_scale out x 0.5)) => [(Sym \"ht_scale\") (Sym \"out\") (Sym \"x\") 0.5]"
  (cond (isinstance form Expression) (lfor f form (plain f))
        (isinstance form Symbol) (Sym form)
        (isinstance form Integer) (int form)
        (isinstance form Float) (float form)
        True (raise (TypeError f"not a kernel-call word: {form !r}"))))


(defn kernel-names [form]
  "The kernel a kernel-call form calls, as a list:
  (kernel-names (plain '(check (ht_nll_loss_fwd out p)))) => [\"ht_nll_loss_fwd\"]
  and the functions sizing its workspaces: (ht_conv2d_fwd ... (workspace (ht_conv2d_workspace ...)))
  => [\"ht_conv2d_fwd\" \"ht_conv2d_workspace\"]"
  (setv [head #* args] form)
  (if (= head "check")
    (kernel-names (get args 0))
    [(str head) #* (gfor a args :if (and (isinstance a list) (= (get a 0) "workspace"))
                     name (kernel-names (get a 1))
                     name)]))


(defn words-of [form]
  "Every word of a kernel-call form, nested ones included:
  (words-of (plain '(ht_dropout_fwd out aux x p rng (numel x)))) => [\"ht_dropout_fwd\" ... \"numel\" \"x\"]"
  (lfor w form
        x (if (isinstance w list) (words-of w) [w])
        (str x)))


(defclass Op []
  "One tensor op of the IR (see the module's docstring).

  name      the IR name, `(call NAME (...))`
  inputs    the names of its tensor operands, then `attrs` those of its constant operands
  torch     the dotted names of the torch callables it stands for (\"torch.Tensor.relu\")
  optional  the inputs that may be None (absent: NULL in its kernel calls, no gradient)
  aux       the dtype of an auxiliary buffer of the result's shape, which its forward kernels
            write (`aux`) and its gradient's kernels read (`(aux Y)`, Y the result): max
            pooling's indices, dropout's mask; None for none
  stage     a torch call's arguments -> [inputs... attrs...], or (Identity x); raises
            Unsupported
  rule      the inputs' TensorTypes and the attrs -> the result's TensorType; raises ShapeError
  forward   the kernel calls computing it, or a dict of them by the first input's dtype;
            None for the bespoke ops
  gradient  (fn [gy out INPUTS... ATTRS...] ...) -> the gradient of each input, as an IR node
            of table ops (nested calls allowed) or None; None for an op without gradient

    (Op \"tanh\" :inputs [\"x\"] :torch [\"torch.tanh\"] :rule (fn [x] x)
        :forward ['(ht_tanh_fwd out x (numel x))]
        :gradient (fn [gy y x] [(call \"tanh_grad\" gy y)]))"
  (defn __init__ [self name * inputs rule [attrs #()] [optional #()] [aux None] [torch #()]
                  [stage None] [forward None] [gradient None]]
    (setv self.name name self.inputs (tuple inputs) self.attrs (tuple attrs)
          self.optional (frozenset optional) self.aux aux
          self.torch (tuple torch) self.stage (or stage (fn [#* operands] (list operands)))
          self.rule rule self.gradient gradient
          self.forward (cond (is forward None) None
                             (isinstance forward dict) (dfor [k calls] (.items forward)
                                                             k (lfor c calls (plain c)))
                             True (lfor c forward (plain c)))))

  (defn [property] operands [self] (+ self.inputs self.attrs))

  (defn [property] differentiable [self] (is-not self.gradient None))

  (defn [property] random [self]
    "Whether its forward kernels draw random numbers (the word `rng`: dropout's masks)."
    (setv forms (if (isinstance self.forward dict)
                  (lfor calls (.values self.forward) c calls c)
                  (or self.forward [])))
    (any (gfor form forms (in "rng" (words-of form)))))

  (defn result-type [self input-types attrs]
    "The result's TensorType, or ShapeError."
    (self.rule #* input-types #* attrs))

  (defn kernel-calls [self input-types]
    "The kernel-call forms computing the op on inputs of these types."
    (if (isinstance self.forward dict)
      (do (setv dtype (. (get input-types 0) dtype))
          (when (not-in dtype self.forward)
            (raise (ShapeError f"{self.name} of a {dtype} tensor is not supported")))
          (get self.forward dtype))
      self.forward))

  (defn [property] kernels [self]
    "Every kernel its forward may call."
    (setv variants (cond (is self.forward None) []
                         (isinstance self.forward dict) (.values self.forward)
                         True [self.forward]))
    (lfor calls variants form calls name (kernel-names form) name))

  (defn gradients [self gy out operands]
    "The gradient of each input given `gy` for the output `out`: IR nodes or None."
    (self.gradient gy out #* operands))

  (defn [property] backward-ops [self]
    "The names of the ops its gradient is made of."
    (setv names [] stack (list (self.gradients (Sym "gy") (Sym "out") (lfor o self.operands (Sym o)))))
    (while stack
      (setv node (.pop stack))
      (when (and (isinstance node list) node (= (get node 0) CALL))
        (.append names (str (get node 1)))
        (.extend stack (get node 2))))
    names)

  (defn __repr__ [self] f"<Op {self.name} ({(.join " " self.operands)})>"))


;; ------------------------------------------------------------ shape rules

(defn batch-of [#* types]
  "The batch tag of a result: that of its batched operands, which must agree."
  (setv tags (sfor t types :if t.batched t.batched))
  (when (> (len tags) 1)
    (raise (ShapeError "operands come from different data loader loops")))
  (if tags (next (iter tags)) None))


(defn float-type [x what]
  "`x` itself, which must be float32."
  (when (!= x.dtype "float32")
    (raise (ShapeError f"{what} needs a float32 tensor, got {(show x)}")))
  x)


(defn axis [dim ndim what]
  "`dim` as a non-negative axis of an `ndim`-dimensional tensor: (axis -1 2 \"softmax\") => 1"
  (setv d (if (< dim 0) (+ dim ndim) dim))
  (when (not (<= 0 d (- ndim 1)))
    (raise (ShapeError f"{what}: dim {dim} is out of range for a {ndim}-dimensional tensor")))
  d)


(defn dot-type [w x]
  "`(dot W X)`: a Linear layer without its bias, X[..., in] @ W[out, in]^T.

    (dot-type (TensorType #(50 784)) (TensorType #(64 784) :batched \"b\"))
    ; => TensorType((64, 50), float32, batched='b')"
  (float-type w "a Linear weight") (float-type x "a Linear layer")
  (when (or (!= w.ndim 2) w.batched)
    (raise (ShapeError f"a Linear weight must be a 2-D parameter, got {(show w)}")))
  (when (or (< x.ndim 1) (!= (get x.shape -1) (get w.shape 1)))
    (raise (ShapeError f"Linear layer expects inputs with {(get w.shape 1)} features, got {(show x)}")))
  (TensorType #(#* (cut x.shape 0 -1) (get w.shape 0)) "float32" x.batched))


(defn row-vector-operand [op a b]
  "Which operand of `(OP A B)` (tensor types) is a row vector added to every row of the
  other: 0 or 1, None when neither is (equal shapes, or no rule fits).

    (row-vector-operand \"+\" (TensorType #(4 3)) (TensorType #(3)))  ; => 1"
  (defn row-vector-of [v x]
    (and (= v.ndim 1) (>= x.ndim 2) (= (get x.shape -1) (get v.shape 0)) (not v.batched)))
  (cond (or (!= op "+") (= a.shape b.shape)) None
        (row-vector-of b a) 1
        (row-vector-of a b) 0
        True None))


(defn elementwise-type [op a b]
  "`(+ A B)`, `(- A B)`, `(* A B)` of float32 tensors: equal shapes, or for `+` a row vector
  added to every row (what the renderer compiles; no other broadcasting yet).

    (elementwise-type \"+\" (TensorType #(4 3)) (TensorType #(3)))  ; => TensorType((4, 3), float32)"
  (when (or (!= a.dtype "float32") (!= b.dtype "float32"))
    (raise (ShapeError f"`{op}` of tensors needs float32 tensors, got {(show a)} and {(show b)}")))
  (setv batched (batch-of a b)
        row-vector (row-vector-operand op a b))
  (cond (= a.shape b.shape) (TensorType a.shape "float32" batched)
        (= row-vector 1) (TensorType a.shape "float32" batched)
        (= row-vector 0) (TensorType b.shape "float32" batched)
        True (raise (ShapeError (+ f"`{op}` of tensors {(show a)} and {(show b)} is not supported "
                                   "(equal shapes, or + of a row vector)")))))


(defn compare-type [a b]
  "`(== A B)`: int64 tensors of one shape (predictions and labels), an int64 result."
  (when (or (!= a.shape b.shape) (!= a.dtype "int64") (!= b.dtype "int64"))
    (raise (ShapeError (+ f"`==` of tensors {(show a)} and {(show b)} is not supported (int64 "
                          "tensors of one shape, e.g. predictions and labels)"))))
  (TensorType a.shape "int64" (batch-of a b)))


(defn last-dim-type [x dim what]
  "log_softmax / softmax along `dim`, which must be the last dimension and not the batch."
  (float-type x what)
  (setv d (axis dim x.ndim what))
  (when (and x.batched (= d 0))
    (raise (ShapeError f"{what} over the batch dimension (dim {dim}) is not supported")))
  (when (!= d (- x.ndim 1))
    (raise (ShapeError f"{what} is supported along the last dimension only, got dim {dim} of {(show x)}")))
  x)


(defn nll-loss-type [logp target mean]
  (float-type logp "nll_loss")
  (when (or (!= logp.ndim 2) (!= target.ndim 1) (!= target.dtype "int64")
            (!= (get logp.shape 0) (get target.shape 0)))
    (raise (ShapeError (+ "nll_loss expects log-probabilities [N, C] and int64 targets [N], got "
                          f"{(show logp)} and {(show target)}"))))
  (batch-of logp target)
  (TensorType #() "float32"))


(defn mse-loss-type [x target]
  (float-type x "mse_loss") (float-type target "mse_loss")
  (when (!= x.shape target.shape)
    (raise (ShapeError f"mse_loss needs equal shapes, got {(show x)} and {(show target)}")))
  (batch-of x target)
  (TensorType #() "float32"))


(defn reduce-type [x what]
  "`sum`/`mean` of a whole tensor: a 0-dimensional tensor."
  (when (and (= what "mean") (!= x.dtype "float32"))
    (raise (ShapeError f"mean needs a float32 tensor, got {(show x)}")))
  (TensorType #() x.dtype))


(defn argmax-type [x dim]
  (setv d (axis dim x.ndim "argmax"))
  (when (!= d (- x.ndim 1))
    (raise (ShapeError f"argmax is supported along the last dimension only, got dim {dim}")))
  (TensorType (cut x.shape 0 -1) "int64" x.batched))


(defn view-type [x dims]
  "`(call X view (DIMS))`: the same elements in a new shape; one dim may be -1."
  (setv dims (list dims)
        unknown (lfor [i d] (enumerate dims) :if (= d -1) i))
  (when (not (all (gfor d dims (and (isinstance d int) (not (isinstance d bool))))))
    (raise (ShapeError f"view {dims}: the dimensions must be ints")))
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
  (setv d (axis start (max x.ndim 1) "flatten"))
  [#* (cut x.shape 0 d) (math.prod (cut x.shape d None))])


(defn window-count [size k s what]
  "How many windows of `k` at stride `s` fit in `size`: (window-count 28 3 1 \"conv2d\") => 26"
  (when (not (and (isinstance k int) (isinstance s int) (>= k 1) (>= s 1)))
    (raise (ShapeError f"{what}: kernel sizes and strides must be positive ints, got {k} and {s}")))
  (when (> k size)
    (raise (ShapeError f"{what}: a window of {k} does not fit in a size of {size}")))
  (+ (// (- size k) s) 1))


(defn conv2d-type [x w b sh sw ph pw]
  "`(call conv2d (X W B SH SW PH PW))`: X[n, c, h, w] convolved with W[oc, c, kh, kw] (plus
  B[oc], B may be None) at stride (SH, SW), zero padding (PH, PW).

    (conv2d-type (TensorType #(64 1 28 28) :batched \"b\") (TensorType #(32 1 3 3)) None 1 1 0 0)
    ; => TensorType((64, 32, 26, 26), float32, batched='b')"
  (float-type x "conv2d") (float-type w "a conv2d weight")
  (when (!= x.ndim 4)
    (raise (ShapeError f"conv2d expects a 4-D input [N, C, H, W], got {(show x)}")))
  (when (or (!= w.ndim 4) w.batched)
    (raise (ShapeError f"a conv2d weight must be a 4-D parameter [OC, C, KH, KW], got {(show w)}")))
  (setv [n c h wd] x.shape [oc wc kh kw] w.shape)
  (when (!= c wc)
    (raise (ShapeError f"conv2d's weight {(show w)} expects {wc} input channels, got {(show x)}")))
  (when (and (is-not b None) (or (!= b.shape #(oc)) (!= b.dtype "float32") b.batched))
    (raise (ShapeError f"conv2d's bias must be a float32 vector of {oc}, got {(show b)}")))
  (when (not (and (isinstance ph int) (isinstance pw int) (>= ph 0) (>= pw 0)))
    (raise (ShapeError f"conv2d: paddings must be ints >= 0, got {ph} and {pw}")))
  (TensorType #(n oc (window-count (+ h (* 2 ph)) kh sh "conv2d")
                     (window-count (+ wd (* 2 pw)) kw sw "conv2d"))
              "float32" x.batched))


(defn pool2d-type [x kh kw sh sw what]
  "`(call max_pool2d (X KH KW SH SW))` and avg_pool2d: each plane of X[..., h, w] (3-D or
  4-D) pooled in windows of KH x KW at stride (SH, SW), no padding."
  (float-type x what)
  (when (not-in x.ndim #(3 4))
    (raise (ShapeError f"{what} expects a 3-D or 4-D input [N, C, H, W], got {(show x)}")))
  (setv [h w] (cut x.shape -2 None))
  (TensorType #(#* (cut x.shape 0 -2) (window-count h kh sh what) (window-count w kw sw what))
              "float32" x.batched))


(defn dropout-type [x p]
  (when (not (and (isinstance p #(int float)) (<= 0 p 1)))
    (raise (ShapeError f"dropout probability has to be between 0 and 1, but got {p}")))
  (float-type x "dropout"))


(defn dot-grad-input-type [gy w]
  "dX of `(dot W X)`: X's shape, [..., in]."
  (TensorType #(#* (cut gy.shape 0 -1) (get w.shape 1)) "float32" gy.batched))


;; the tensor operations people reach for first (issue 9): shape rules

(defn resized [shape d size]
  "`shape` with a size of `size` along dim `d`, or without dim `d` when `size` is None:
  (resized #(4 3 2) 1 None) => #(4 2)"
  #(#* (cut shape 0 d) #* (if (is size None) #() #(size)) #* (cut shape (+ d 1) None)))


(defn same-shape-type [a b what]
  "Two float32 tensors of one shape (broadcasting is staged as `broadcast_dim` first)."
  (float-type a what) (float-type b what)
  (when (!= a.shape b.shape)
    (raise (ShapeError f"{what} needs tensors of one shape, got {(show a)} and {(show b)}")))
  (TensorType a.shape "float32" (batch-of a b)))


(defn broadcast-shape [a b what]
  "The shape two shapes broadcast to (torch's rule): (broadcast-shape #(4 1) #(3) \"+\") => #(4 3)"
  (setv n (max (len a) (len b))
        padded-a (+ (* #(1) (- n (len a))) (tuple a))
        padded-b (+ (* #(1) (- n (len b))) (tuple b)))
  (tuple (gfor [x y] (zip padded-a padded-b)
               (cond (= x y) x (= x 1) y (= y 1) x
                     True (raise (ShapeError (+ f"`{what}` of tensors of shapes {(list a)} and "
                                                f"{(list b)}: they do not broadcast")))))))


(defn not-over-batch-rows [x d what]
  (when (and x.batched (= d 0))
    (raise (ShapeError f"{what} along the rows of a data loader's batch (dim 0) is not supported"))))


(defn dim-reduce-type [x dim keepdim what]
  "`sum_dim` / `mean_dim`: X reduced along DIM (kept as a size 1 when KEEPDIM).

    (dim-reduce-type (TensorType #(4 3)) 1 True \"mean\")  ; => TensorType((4, 1), float32)"
  (float-type x what)
  (setv d (axis dim x.ndim what))
  (TensorType (resized x.shape d (when keepdim 1)) "float32" (if (= d 0) None x.batched)))


(defn repeat-dim-type [x dim times]
  "`(call repeat_dim (X DIM TIMES))`: X, of size 1 along DIM, copied TIMES times there (a
  tensor's `.repeat`).

    (repeat-dim-type (TensorType #(1 32)) 0 4)   ; => TensorType((4, 32), float32)"
  (float-type x "repeat")
  (setv d (axis dim x.ndim "repeat"))
  (when (!= (get x.shape d) 1)
    (raise (ShapeError f"repeat copies along dims of size 1 only; dim {dim} of {(show x)} is not")))
  (when (and x.batched (= d 0))
    (raise (ShapeError "repeat along the rows of a data loader's batch is not supported")))
  (when (or (isinstance times bool) (not (isinstance times int)) (< times 1))
    (raise (ShapeError f"repeat takes a positive count, not {times !r}")))
  (TensorType (resized x.shape d times) "float32" x.batched))


(defn broadcast-dim-type [x like dim]
  "`(call broadcast_dim (X LIKE DIM))`: X, of size 1 along DIM, repeated to LIKE's size there
  (DIM < 0 counts from the end of each: LIKE may have fewer dims); the rows of a data loader's
  batch when that is LIKE's first dim.

    (broadcast-dim-type (TensorType #(1 3)) (TensorType #(8 3) :batched \"b\") -2)
    ; => TensorType((8, 3), float32, batched='b')"
  (float-type x "broadcasting")
  (setv d (axis dim x.ndim "broadcasting")
        dl (axis dim like.ndim "broadcasting"))
  (when (!= (get x.shape d) 1)
    (raise (ShapeError f"broadcasting {(show x)} along dim {dim} needs a size 1 there")))
  (TensorType (resized x.shape d (get like.shape dl)) "float32"
              (or x.batched (when (= dl 0) like.batched))))


(defn narrow-type [x dim start length]
  "`(call narrow (X DIM START LENGTH))`: X[..., START:START+LENGTH, ...] along DIM."
  (setv d (axis dim x.ndim "slicing"))
  (not-over-batch-rows x d "slicing")
  (when (not (and (isinstance start int) (isinstance length int) (<= 0 start)
                  (<= 0 length) (<= (+ start length) (get x.shape d))))
    (raise (ShapeError f"slice {start}:{start}+{length} along dim {dim} is out of range for {(show x)}")))
  (TensorType (resized x.shape d length) x.dtype x.batched))


(defn cat-type [a b dim]
  "`(call cat (A B DIM))`: A then B along DIM; their dtypes and other dims agree."
  (setv d (axis dim (max a.ndim 1) "cat"))
  (when (or (!= a.ndim b.ndim) (= a.ndim 0) (!= a.dtype b.dtype)
            (!= (resized a.shape d None) (resized b.shape d None)))
    (raise (ShapeError (+ f"cat along dim {dim} needs tensors whose dtypes and other dims agree, got "
                          f"{(show a)} and {(show b)}"))))
  (not-over-batch-rows (if a.batched a b) d "cat")
  (TensorType (resized a.shape d (+ (get a.shape d) (get b.shape d))) a.dtype (batch-of a b)))


(defn transpose-type [x]
  "`(call transpose (X))`: X with its last two dims swapped.

    (transpose-type (TensorType #(2 5 3)))  ; => TensorType((2, 3, 5), float32)"
  (float-type x "transpose")
  (when (< x.ndim 2)
    (raise (ShapeError f"transpose needs a tensor of at least 2 dims, got {(show x)}")))
  (when (and x.batched (= x.ndim 2))
    (raise (ShapeError f"transposing the rows of a data loader's batch is not supported")))
  (TensorType #(#* (cut x.shape 0 -2) (get x.shape -1) (get x.shape -2)) "float32" x.batched))


(defn matmul-type [a b]
  "`(call matmul (A B))`: A[..., m, k] @ B[k, n], a 2-D B.

    (matmul-type (TensorType #(2 5 3)) (TensorType #(3 4)))  ; => TensorType((2, 5, 4), float32)"
  (float-type a "matmul") (float-type b "matmul")
  (when (or (< a.ndim 2) (!= b.ndim 2) b.batched (!= (get a.shape -1) (get b.shape 0)))
    (raise (ShapeError f"matmul of {(show a)} and {(show b)}: shapes [..., m, k] and [k, n] expected")))
  (TensorType #(#* (cut a.shape 0 -1) (get b.shape 1)) "float32" a.batched))


(defn bmm-type [a b]
  "`(call bmm (A B))`: A[p, m, k] @ B[p, k, n] for each p."
  (float-type a "bmm") (float-type b "bmm")
  (when (or (!= a.ndim 3) (!= b.ndim 3) (!= (get a.shape 0) (get b.shape 0))
            (!= (get a.shape 2) (get b.shape 1)))
    (raise (ShapeError f"batched matmul of {(show a)} and {(show b)}: shapes [p, m, k] and [p, k, n] expected")))
  (TensorType #((get a.shape 0) (get a.shape 1) (get b.shape 2)) "float32" (batch-of a b)))


(defn to-float-type [x]
  (when (!= x.dtype "int64")
    (raise (ShapeError f"float() converts an int64 tensor, got {(show x)}")))
  (TensorType x.shape "float32" x.batched))


;; ------------------------------------------------------------ how torch calls stage

(defn needs-dim [what]
  "The arguments of log_softmax / softmax: a dim, no dtype."
  (fn [x [dim None] [_stacklevel 3] [dtype None]]
    (when (or (is dim None) (is-not dtype None))
      (unsupported f"{what} needs dim= (and no dtype) on staged tensors"))
    [x dim]))


(defn reduction-args [what]
  "The arguments of sum / mean: the whole tensor, or dims (`what`_dim over each, the last
  first)."
  (fn [x [dim None] [keepdim False] [dtype None]]
    (when (is-not dtype None)
      (unsupported f"{what} with a dtype is not supported on staged tensors"))
    (when (and (is dim None) keepdim)
      (unsupported f"{what} with keepdim=True needs a dim on staged tensors"))
    (if (is dim None)
      [x]
      (do (setv dims (reduced-dims dim (ndim-of x) what) reduced x)
          (for [d dims]
            (setv reduced (Delegate f"{what}_dim" reduced d (bool keepdim))))
          reduced))))


(defn reduced-dims [dim n what]
  "The dims of a reduction, from the last: (reduced-dims [0 -1] 3 \"sum\") => [2 0]"
  (defn an-int [d] (and (isinstance d int) (not (isinstance d bool))))
  (setv dims (if (isinstance dim #(list tuple)) dim [dim]))
  (when (not (and dims (all (gfor d dims (an-int d)))))
    (unsupported (+ f"{what} over dim={dim !r} is not supported on staged tensors: an int, "
                    "a list of ints, or none (the whole tensor)")))
  (sorted (sfor d dims (if (<= (- n) d -1) (+ d n) d)) :reverse True))


(defn reduction-mean [reduction size-average reduce]
  "Whether a loss's `reduction` is the mean (else the sum)."
  (when (or (is-not size-average None) (is-not reduce None))
    (unsupported "size_average/reduce are deprecated; use reduction="))
  (when (not-in reduction #("mean" "sum"))
    (unsupported f"reduction={reduction !r} is not supported (use 'mean' or 'sum')"))
  (= reduction "mean"))


(defn nll-loss-args [logp target [weight None] [size-average None] [ignore-index -100]
                     [reduce None] [reduction "mean"]]
  (when (is-not weight None)
    (unsupported "nll_loss with class weights is not supported"))
  (when (!= ignore-index -100)
    (unsupported "nll_loss and cross_entropy with an ignore_index are not supported"))
  [logp target (reduction-mean reduction size-average reduce)])


(defn mse-loss-args [x target [size-average None] [reduce None] [reduction "mean"] [weight None]]
  (when (or (!= reduction "mean") (is-not size-average None) (is-not reduce None)
            (is-not weight None))
    (unsupported "mse_loss is supported with reduction='mean' only"))
  [x target])


(defn argmax-args [x [dim None] [keepdim False]]
  (when (or (is dim None) keepdim)
    (unsupported "argmax needs a dim (and keepdim=False) on staged tensors"))
  [x dim])


(defn activation-args [x [inplace False]]
  [x])


(defn pair [v what]
  "An int or a pair of ints, as torch takes kernel sizes, strides, paddings: (pair 2 \"stride\")
  => #(2 2)"
  (setv v (if (isinstance v #(list tuple)) (tuple v) #(v v)))
  (when (not (and (= (len v) 2) (all (gfor a v (and (isinstance a int) (not (isinstance a bool)))))))
    (unsupported f"{what} must be an int or a pair of ints known at staging, got {v !r}"))
  v)


(defn conv-padding [padding w]
  "conv2d's padding: ints, \"valid\", or \"same\" (stride 1, odd kernel sizes)."
  (cond (= padding "valid") #(0 0)
        (= padding "same")
          (do (setv [kh kw] (cut (tuple w.shape) 2 None))
              (when (or (= (% kh 2) 0) (= (% kw 2) 0))
                (unsupported "conv2d with padding='same' is supported for odd kernel sizes only"))
              #((// kh 2) (// kw 2)))
        True (pair padding "conv2d's padding")))


(defn conv2d-args [x w [bias None] [stride 1] [padding 0] [dilation 1] [groups 1]]
  (when (!= (pair dilation "conv2d's dilation") #(1 1))
    (unsupported "conv2d with dilation is not supported"))
  (when (!= groups 1)
    (unsupported "conv2d with groups is not supported"))
  (setv [sh sw] (pair stride "conv2d's stride"))
  (when (and (= padding "same") (!= #(sh sw) #(1 1)))
    (unsupported "conv2d with padding='same' needs stride 1"))
  [x w bias sh sw #* (conv-padding padding w)])


(defn pool-window [what kernel-size stride padding ceil-mode]
  "#(kh kw sh sw) of a pooling call; no padding, no ceil_mode."
  (when (!= (pair padding f"{what}'s padding") #(0 0))
    (unsupported f"{what} with padding is not supported (padding=0 is)"))
  (when ceil-mode
    (unsupported f"{what} with ceil_mode=True is not supported"))
  (setv kernel (pair kernel-size f"{what}'s kernel_size"))
  #(#* kernel #* (if (or (is stride None) (= stride []) (= stride #())) kernel
                     (pair stride f"{what}'s stride"))))


(defn max-pool2d-args [x kernel-size [stride None] [padding 0] [dilation 1] [ceil-mode False]
                       [return-indices False]]
  (when (!= (pair dilation "max_pool2d's dilation") #(1 1))
    (unsupported "max_pool2d with dilation is not supported"))
  (when return-indices
    (unsupported "max_pool2d with return_indices=True is not supported"))
  [x #* (pool-window "max_pool2d" kernel-size stride padding ceil-mode)])


(defn avg-pool2d-args [x kernel-size [stride None] [padding 0] [ceil-mode False]
                       [count-include-pad True] [divisor-override None]]
  (when (is-not divisor-override None)
    (unsupported "avg_pool2d with divisor_override is not supported"))
  [x #* (pool-window "avg_pool2d" kernel-size stride padding ceil-mode)])


(defn dropout-args [x [p 0.5] [training True] [inplace False]]
  "Dropout in training mode with 0 < p is an op; otherwise it is its input."
  (when (not (and (real-number? p) (<= 0 p 1)))
    (unsupported f"dropout probability has to be a number between 0 and 1 known at staging, got {p !r}"))
  (when (not (isinstance training bool))
    (unsupported "dropout's training flag must be known at staging (a bool)"))
  (if (and training (> p 0)) [x (float p)] (Identity x)))


(defn number [v what]
  "A bound given as a number known at staging (not a tensor, not a run-time value), which
  float32 holds: torch refuses a finite one past float32's largest."
  (when (not (real-number? v))
    (unsupported (+ f"{what} must be a number known at staging, got "
                    (if (hasattr v "shape") "a tensor" (. (type v) __name__)))))
  (when (and (math.isfinite v) (> (abs v) FLOAT32-MAX))
    (unsupported f"{what} {v} cannot be converted to float32 without overflow (nor can torch)"))
  (float v))


(defn clamp-args [x [min None] [max None]]
  "clamp / clip: a clamp_min, a clamp_max, or a clamp_max of a clamp_min."
  (setv lo (when (is-not min None) (number min "clamp's min"))
        hi (when (is-not max None) (number max "clamp's max")))
  (cond (and (is lo None) (is hi None)) (unsupported "clamp needs min or max")
        (is hi None) [x lo]
        (is lo None) (Delegate "clamp_max" x hi)
        True (Delegate "clamp_max" (Delegate "clamp_min" x lo) hi)))


(defn ndim-of [x]
  (len (getattr x "shape" #())))


(defn matmul-args [a b * [out None]]
  "matmul / mm / `@`: [..., m, k] @ [k, n], or [p, m, k] @ [p, k, n] (bmm)."
  (when (is-not out None)
    (unsupported "matmul with out= is not supported"))
  (cond (and (= (ndim-of a) 3) (= (ndim-of b) 3)) (Delegate "bmm" a b)
        (and (>= (ndim-of a) 2) (= (ndim-of b) 2)) [a b]
        True (unsupported (+ f"matmul of {(ndim-of a)}-D and {(ndim-of b)}-D tensors is not "
                             "supported: [..., m, k] @ [k, n] or [p, m, k] @ [p, k, n]"))))


(defn to-float-args [x [memory-format None]]
  "float(): a float32 tensor is itself, an int64 one is converted."
  (if (= (str x.dtype) "torch.float32") (Identity x) [x]))


(defn detach-args [x]
  "detach(): an int64 tensor has no gradient to cut, it is itself."
  (if (= (str x.dtype) "torch.int64") (Identity x) [x]))


(defn transpose-args [x [dim0 None] [dim1 None]]
  "t() (a tensor of fewer than 2 dims is itself, as in torch) and transpose(dim0, dim1) of the
  last two dims."
  (setv n (ndim-of x))
  (cond (and (is dim0 None) (is dim1 None))
          (cond (< n 2) (Identity x)
                (= n 2) [x]
                True (unsupported f"t() needs a tensor of at most 2 dims, got {n}; use transpose"))
        (not (and (isinstance dim0 int) (isinstance dim1 int) (<= (- n) dim0 (- n 1))
                  (<= (- n) dim1 (- n 1))))
          (unsupported f"transpose needs two dims of a {n}-dimensional tensor, got {dim0} and {dim1}")
        (= (% dim0 n) (% dim1 n)) (Identity x)
        (= #{(% dim0 n) (% dim1 n)} #{(- n 2) (- n 1)}) [x]
        True (unsupported (+ f"transpose of dims {dim0} and {dim1} is not supported on staged "
                             "tensors: of the last two dims"))))


(defn narrow-args [x dim start length]
  (for [[v what] [[dim "dim"] [start "start"] [length "length"]]]
    (when (not (and (isinstance v int) (not (isinstance v bool))))
      (unsupported f"narrow's {what} must be an int known at staging")))
  [x dim (if (< start 0) (+ start (get (. x shape) dim)) start) length])


;; ------------------------------------------------------------ the table

(defn activation [name torch forward grad]
  "An elementwise activation of a float32 tensor, whose gradient `grad` reads its output."
  (Op name :inputs ["x"] :torch torch :stage activation-args
      :rule (fn [x] (float-type x name))
      :forward [forward]
      :gradient (fn [gy y x] [(call grad gy y)])))


(defn output-grad [name backward]
  "The backward op of an activation or a softmax: dX from dY and the forward's output Y."
  (Op name :inputs ["gy" "y"] :rule (fn [gy y] y) :forward [backward]))


(defn softmax-like [name torch forward grad]
  "A softmax along the last dimension, whose gradient `grad` reads its output."
  (Op name :inputs ["x"] :attrs ["dim"] :torch torch :stage (needs-dim name)
      :rule (fn [x dim] (last-dim-type x dim name))
      :forward [forward]
      :gradient (fn [gy y x dim] [(call grad gy y)])))


;; conv2d's kernels' arguments: the sizes of X [n c h w] and W [oc c kh kw], then the
;; attributes; and the workspace they need.
(setv CONV-GEOMETRY '((dim x 0) (dim x 1) (dim x 2) (dim x 3) (dim w 0) (dim w 2) (dim w 3)
                      sh sw ph pw)
      CONV-WORKSPACE '(workspace (ht_conv2d_workspace (dim x 1) (dim x 2) (dim x 3) (dim w 0)
                                                      (dim w 2) (dim w 3) sh sw ph pw)))

;; conv2d_relu_max_pool2d's attributes (conv2d's, then max_pool2d's window) and workspace.
(setv CONV-POOL-ATTRS ["sh" "sw" "ph" "pw" "pkh" "pkw" "psh" "psw"]
      CONV-POOL-WORKSPACE `(workspace (ht_conv2d_pool_workspace ~@(cut (get CONV-WORKSPACE 1) 1 None))))

;; max_pool2d's rule and forward kernel, which relu_max_pool2d shares.
(defn max-pool2d-type [x kh kw sh sw] (pool2d-type x kh kw sh sw "max_pool2d"))
(setv MAX-POOL2D-FWD '(ht_max_pool2d_fwd out aux x (planes x) (dim x -2) (dim x -1) kh kw sh sw))


(defn conv2d-grads [gy x w b sh sw ph pw]
  "The gradients of conv2d's X, W and B (None without a bias) for `gy` at its output:
  (conv2d-grads (Sym \"gy\") (Sym \"x\") (Sym \"w\") None 1 1 0 0)
  => [(call \"conv2d_grad_input\" ...) (call \"conv2d_grad_weight\" ...) None]"
  [(call "conv2d_grad_input" gy w x sh sw ph pw)
   (call "conv2d_grad_weight" gy x w sh sw ph pw)
   (when (is-not b None) (call "conv2d_grad_bias" gy b))])


(setv TABLE
  [(activation "relu" ["torch.nn.functional.relu" "torch.relu" "torch.Tensor.relu"]
               '(ht_relu_fwd out x (numel x)) "relu_grad")
   (output-grad "relu_grad" '(ht_relu_bwd out gy y (numel y) 0))
   (activation "sigmoid" ["torch.nn.functional.sigmoid" "torch.sigmoid" "torch.Tensor.sigmoid"]
               '(ht_sigmoid_fwd out x (numel x)) "sigmoid_grad")
   (output-grad "sigmoid_grad" '(ht_sigmoid_bwd out gy y (numel y) 0))
   (activation "tanh" ["torch.nn.functional.tanh" "torch.tanh" "torch.Tensor.tanh"]
               '(ht_tanh_fwd out x (numel x)) "tanh_grad")
   (output-grad "tanh_grad" '(ht_tanh_bwd out gy y (numel y) 0))

   (softmax-like "log_softmax" ["torch.nn.functional.log_softmax" "torch.log_softmax"
                                "torch.Tensor.log_softmax"]
                 '(ht_log_softmax_fwd out x (rows x) (cols x)) "log_softmax_grad")
   (output-grad "log_softmax_grad" '(ht_log_softmax_bwd out gy y (rows y) (cols y) 0))
   (softmax-like "softmax" ["torch.nn.functional.softmax" "torch.softmax" "torch.Tensor.softmax"]
                 '(ht_softmax_fwd out x (rows x) (cols x)) "softmax_grad")
   (output-grad "softmax_grad" '(ht_softmax_bwd out gy y (rows y) (cols y) 0))

   (Op "nll_loss" :inputs ["logp" "target"] :attrs ["mean"]
       :torch ["torch.nn.functional.nll_loss"] :stage nll-loss-args :rule nll-loss-type
       :forward ['(check (ht_nll_loss_fwd out logp target (rows logp) (cols logp) mean))]
       :gradient (fn [gl l logp target mean] [(call "nll_loss_grad" gl logp target mean) None]))
   (Op "nll_loss_grad" :inputs ["gl" "logp" "target"] :attrs ["mean"]
       :rule (fn [gl logp target mean] logp)
       :forward ['(ht_nll_loss_bwd out (item gl) target (rows logp) (cols logp) mean 0)])

   (Op "mse_loss" :inputs ["x" "target"] :torch ["torch.nn.functional.mse_loss"]
       :stage mse-loss-args :rule mse-loss-type
       :forward ['(ht_mse_loss_fwd out x target (numel x))]
       :gradient (fn [gl l x target]
                   [(call "mse_loss_grad" gl x target)
                    (call "scale" (call "mse_loss_grad" gl x target) -1.0)]))
   (Op "mse_loss_grad" :inputs ["gl" "x" "target"] :rule (fn [gl x target] x)
       :forward ['(ht_mse_loss_bwd out (item gl) x target (numel x) 0)])

   (Op "sum" :inputs ["x"] :torch ["torch.sum" "torch.Tensor.sum"] :stage (reduction-args "sum")
       :rule (fn [x] (reduce-type x "sum"))
       :forward {"float32" ['(ht_sum_all out x (numel x))]
                 "int64" ['(ht_sum_all_i64 out x (numel x))]}
       :gradient (fn [gl l x] [(call "sum_grad" gl x)]))
   (Op "sum_grad" :inputs ["gl" "x"] :rule (fn [gl x] x)
       :forward ['(ht_sum_all_bwd out (item gl) (numel x) 0)])
   (Op "mean" :inputs ["x"] :torch ["torch.mean" "torch.Tensor.mean"] :stage (reduction-args "mean")
       :rule (fn [x] (reduce-type x "mean"))
       :forward ['(ht_mean_all out x (numel x))]
       :gradient (fn [gl l x] [(call "mean_grad" gl x)]))
   (Op "mean_grad" :inputs ["gl" "x"] :rule (fn [gl x] x)
       :forward ['(ht_mean_all_bwd out (item gl) (numel x) 0)])

   (Op "scale" :inputs ["x"] :attrs ["s"] :rule (fn [x s] (float-type x "multiplication by a constant"))
       :forward ['(ht_scale out x s (numel x))]
       :gradient (fn [gy y x s] [(call "scale" gy s)]))

   (Op "argmax" :inputs ["x"] :attrs ["dim"] :torch ["torch.argmax" "torch.Tensor.argmax"]
       :stage argmax-args :rule argmax-type
       :forward ['(ht_argmax_rows out x (rows x) (cols x))])

   ;; convolution, pooling, dropout
   (Op "conv2d" :inputs ["x" "w" "b"] :optional ["b"] :attrs ["sh" "sw" "ph" "pw"]
       :torch ["torch.nn.functional.conv2d" "torch.conv2d"] :stage conv2d-args :rule conv2d-type
       :forward [`(ht_conv2d_fwd out x w b ~CONV-WORKSPACE ~@CONV-GEOMETRY)]
       :gradient (fn [gy y x w b sh sw ph pw] (conv2d-grads gy x w b sh sw ph pw)))
   ;; The fusion pass's (backend/fusion.hy) for a relu whose input only it reads, a conv2d's
   ;; output: the convolution writes its outputs relu'd, without a pass of its own over them.
   ;; Its gradients: conv2d's, of relu_grad's (one node, emitted once).
   (Op "conv2d_relu" :inputs ["x" "w" "b"] :optional ["b"] :attrs ["sh" "sw" "ph" "pw"]
       :rule conv2d-type
       :forward [`(ht_conv2d_relu_fwd out x w b ~CONV-WORKSPACE ~@CONV-GEOMETRY)]
       :gradient (fn [gy y x w b sh sw ph pw]
                   (conv2d-grads (call "relu_grad" gy y) x w b sh sw ph pw)))
   (Op "conv2d_grad_input" :inputs ["gy" "w" "x"] :attrs ["sh" "sw" "ph" "pw"]
       :rule (fn [gy w x #* _] x)
       :forward [`(ht_conv2d_bwd_input out gy w ~CONV-WORKSPACE ~@CONV-GEOMETRY 0)])
   (Op "conv2d_grad_weight" :inputs ["gy" "x" "w"] :attrs ["sh" "sw" "ph" "pw"]
       :rule (fn [gy x w #* _] w)
       :forward ['(ht_fill out 0.0 (numel w))
                 `(ht_conv2d_bwd_weight out gy x ~CONV-WORKSPACE ~@CONV-GEOMETRY)])
   (Op "conv2d_grad_bias" :inputs ["gy" "b"] :rule (fn [gy b] b)
       :forward ['(ht_fill out 0.0 (numel b))
                 '(ht_conv2d_bwd_bias out gy (dim gy 0) (dim gy 1) (dim gy 2) (dim gy 3))])

   (Op "max_pool2d" :inputs ["x"] :attrs ["kh" "kw" "sh" "sw"] :aux "int64"
       :torch ["torch.nn.functional.max_pool2d" "torch.max_pool2d"] :stage max-pool2d-args
       :rule max-pool2d-type
       :forward [MAX-POOL2D-FWD]
       :gradient (fn [gy y x kh kw sh sw] [(call "max_pool2d_grad" gy y x kh kw sh sw)]))
   (Op "max_pool2d_grad" :inputs ["gy" "y" "x"] :attrs ["kh" "kw" "sh" "sw"]
       :rule (fn [gy y x #* _] x)
       :forward ['(ht_max_pool2d_bwd out gy (aux y) (planes x) (dim x -2) (dim x -1) kh kw sh sw 0)])
   ;; The fusion pass's (backend/fusion.hy) for a relu whose output only a max_pool2d reads:
   ;; relu after the pooling gives the same values (both are monotone) and, through the
   ;; pooled values, the same gradients, without writing or reading the relu's full size.
   (Op "relu_max_pool2d" :inputs ["x"] :attrs ["kh" "kw" "sh" "sw"] :aux "int64"
       :rule max-pool2d-type
       :forward [MAX-POOL2D-FWD '(ht_relu_fwd out out (numel out))]
       :gradient (fn [gy y x kh kw sh sw] [(call "relu_max_pool2d_grad" gy y x kh kw sh sw)]))
   ;; max_pool2d_grad of relu_grad, in one pass over the pooled gradient
   (Op "relu_max_pool2d_grad" :inputs ["gy" "y" "x"] :attrs ["kh" "kw" "sh" "sw"]
       :rule (fn [gy y x #* _] x)
       :forward ['(ht_relu_max_pool2d_bwd out gy y (aux y) (planes x) (dim x -2) (dim x -1)
                                          kh kw sh sw 0)])
   ;; The fusion pass's for a conv2d whose output only a relu_max_pool2d, right after it,
   ;; reads: the convolution's outputs pooled sample by sample while in cache, and its
   ;; gradients from the pooled gradient spread sample by sample (the same bits as conv2d's of
   ;; relu_max_pool2d_grad's); neither full-size tensor is written. The bias's gradient: the
   ;; pooled gradient's sum (each of its elements lands on one output).
   (Op "conv2d_relu_max_pool2d" :inputs ["x" "w" "b"] :optional ["b"] :attrs CONV-POOL-ATTRS
       :aux "int64"
       :rule (fn [x w b sh sw ph pw pkh pkw psh psw]
               (max-pool2d-type (conv2d-type x w b sh sw ph pw) pkh pkw psh psw))
       :forward [`(ht_conv2d_relu_max_pool2d_fwd out aux x w b ~CONV-POOL-WORKSPACE
                                                 ~@CONV-GEOMETRY pkh pkw psh psw)]
       :gradient (fn [gy y x w b #* attrs]
                   [(call "conv2d_pool_grad_input" gy y w x #* attrs)
                    (call "conv2d_pool_grad_weight" gy y x w #* attrs)
                    (when (is-not b None) (call "conv2d_grad_bias" (call "relu_grad" gy y) b))]))
   (Op "conv2d_pool_grad_input" :inputs ["gy" "y" "w" "x"] :attrs CONV-POOL-ATTRS
       :rule (fn [gy y w x #* _] x)
       :forward [`(ht_conv2d_pool_bwd_input out gy y (aux y) w ~CONV-POOL-WORKSPACE
                                            ~@CONV-GEOMETRY pkh pkw psh psw 0)])
   (Op "conv2d_pool_grad_weight" :inputs ["gy" "y" "x" "w"] :attrs CONV-POOL-ATTRS
       :rule (fn [gy y x w #* _] w)
       :forward ['(ht_fill out 0.0 (numel w))
                 `(ht_conv2d_pool_bwd_weight out gy y (aux y) x ~CONV-POOL-WORKSPACE
                                             ~@CONV-GEOMETRY pkh pkw psh psw)])
   (Op "avg_pool2d" :inputs ["x"] :attrs ["kh" "kw" "sh" "sw"]
       :torch ["torch.nn.functional.avg_pool2d"] :stage avg-pool2d-args
       :rule (fn [x kh kw sh sw] (pool2d-type x kh kw sh sw "avg_pool2d"))
       :forward ['(ht_avg_pool2d_fwd out x (planes x) (dim x -2) (dim x -1) kh kw sh sw)]
       :gradient (fn [gy y x kh kw sh sw] [(call "avg_pool2d_grad" gy x kh kw sh sw)]))
   (Op "avg_pool2d_grad" :inputs ["gy" "x"] :attrs ["kh" "kw" "sh" "sw"]
       :rule (fn [gy x #* _] x)
       :forward ['(ht_avg_pool2d_bwd out gy (planes x) (dim x -2) (dim x -1) kh kw sh sw 0)])

   (Op "dropout" :inputs ["x"] :attrs ["p"] :aux "uint8"
       :torch ["torch.nn.functional.dropout" "torch.dropout"] :stage dropout-args
       :rule dropout-type
       :forward ['(ht_dropout_fwd out aux x p rng (numel x))]
       :gradient (fn [gy y x p] [(call "dropout_grad" gy y p)]))
   (Op "dropout_grad" :inputs ["gy" "y"] :attrs ["p"] :rule (fn [gy y p] y)
       :forward ['(ht_dropout_bwd out gy (aux y) p (numel y) 0)])

   ;; the tensor operations people reach for first (issue 9)
   (Op "div" :inputs ["a" "b"] :torch ["torch.div" "torch.Tensor.div" "torch.true_divide"
                                       "torch.Tensor.true_divide"]
       :rule (fn [a b] (same-shape-type a b "`/`"))
       :forward ['(ht_div out a b (numel a))]
       :gradient (fn [gy y a b] [(call "div" gy b) (call "div_grad_divisor" gy y b)]))
   (Op "div_grad_divisor" :inputs ["gy" "y" "b"] :rule (fn [gy y b] b)
       :forward ['(ht_div_bwd_divisor out gy y b (numel b) 0)])
   (Op "div_scalar" :inputs ["x"] :attrs ["s"] :rule (fn [x s] (float-type x "division by a constant"))
       :forward ['(ht_div_scalar out x s (numel x))]
       :gradient (fn [gy y x s] [(call "div_scalar" gy s)]))
   ;; s / x
   (Op "scalar_div" :inputs ["x"] :attrs ["s"] :rule (fn [x s] (float-type x "division of a constant"))
       :forward ['(ht_scalar_div out s x (numel x))]
       :gradient (fn [gy y x s] [(call "div_grad_divisor" gy y x)]))
   (Op "add_scalar" :inputs ["x"] :attrs ["s"] :rule (fn [x s] (float-type x "adding a constant"))
       :forward ['(ht_add_scalar out x s (numel x))]
       :gradient (fn [gy y x s] [gy]))
   (Op "exp" :inputs ["x"] :torch ["torch.exp" "torch.Tensor.exp"] :rule (fn [x] (float-type x "exp"))
       :forward ['(ht_exp_fwd out x (numel x))]
       :gradient (fn [gy y x] [(call "mul_grad" gy y)]))
   (Op "log" :inputs ["x"] :torch ["torch.log" "torch.Tensor.log"] :rule (fn [x] (float-type x "log"))
       :forward ['(ht_log_fwd out x (numel x))]
       :gradient (fn [gy y x] [(call "div" gy x)]))
   (Op "clamp_min" :inputs ["x"] :attrs ["lo"] :stage clamp-args
       :torch ["torch.clamp" "torch.Tensor.clamp" "torch.clip" "torch.Tensor.clip"
               "torch.clamp_min" "torch.Tensor.clamp_min"]
       :rule (fn [x lo] (float-type x "clamp"))
       :forward ['(ht_clamp_min_fwd out x lo (numel x))]
       :gradient (fn [gy y x lo] [(call "clamp_min_grad" gy x lo)]))
   (Op "clamp_min_grad" :inputs ["gy" "x"] :attrs ["lo"] :rule (fn [gy x lo] x)
       :forward ['(ht_clamp_min_bwd out gy x lo (numel x) 0)])
   (Op "clamp_max" :inputs ["x"] :attrs ["hi"] :torch ["torch.clamp_max" "torch.Tensor.clamp_max"]
       :stage (fn [x hi] [x (number hi "clamp's max")])
       :rule (fn [x hi] (float-type x "clamp"))
       :forward ['(ht_clamp_max_fwd out x hi (numel x))]
       :gradient (fn [gy y x hi] [(call "clamp_max_grad" gy x hi)]))
   (Op "clamp_max_grad" :inputs ["gy" "x"] :attrs ["hi"] :rule (fn [gy x hi] x)
       :forward ['(ht_clamp_max_bwd out gy x hi (numel x) 0)])
   ;; the same values, cut from the graph: no gradient flows back through it
   (Op "detach" :inputs ["x"] :torch ["torch.Tensor.detach" "torch.detach"] :stage detach-args
       :rule (fn [x] (float-type x "detach")) :forward ['(ht_copy out x (numel x))])
   (Op "to_float" :inputs ["x"] :torch ["torch.Tensor.float"] :stage to-float-args :rule to-float-type
       :forward {"int64" ['(ht_i64_to_f32 out x (numel x))]})

   (Op "repeat_dim" :inputs ["x"] :attrs ["dim" "times"] :rule repeat-dim-type
       :forward ['(ht_expand_dim out x (outer x dim) times (inner x dim))]
       :gradient (fn [gy y x dim times] [(call "sum_dim" gy dim True)]))
   (Op "sum_dim" :inputs ["x"] :attrs ["dim" "keepdim"]
       :rule (fn [x dim keepdim] (dim-reduce-type x dim keepdim "sum"))
       :forward ['(ht_sum_dim out x (outer x dim) (dim x dim) (inner x dim))]
       :gradient (fn [gy y x dim keepdim] [(call "sum_dim_grad" gy x dim)]))
   (Op "sum_dim_grad" :inputs ["gy" "x"] :attrs ["dim"] :rule (fn [gy x dim] x)
       :forward ['(ht_expand_dim out gy (outer x dim) (dim x dim) (inner x dim))])
   (Op "mean_dim" :inputs ["x"] :attrs ["dim" "keepdim"]
       :rule (fn [x dim keepdim] (dim-reduce-type x dim keepdim "mean"))
       :forward ['(ht_mean_dim out x (outer x dim) (dim x dim) (inner x dim))]
       :gradient (fn [gy y x dim keepdim] [(call "mean_dim_grad" gy x dim)]))
   (Op "mean_dim_grad" :inputs ["gy" "x"] :attrs ["dim"] :rule (fn [gy x dim] x)
       :forward ['(ht_mean_dim_bwd out gy (outer x dim) (dim x dim) (inner x dim) 0)])
   ;; a broadcasting elementwise op is staged as one of equal shapes, its operands broadcast first
   (Op "broadcast_dim" :inputs ["x" "like"] :attrs ["dim"] :rule broadcast-dim-type
       :forward ['(ht_expand_dim out x (outer x dim) (dim like dim) (inner x dim))]
       :gradient (fn [gy y x like dim] [(call "sum_dim" gy dim True) None]))

   (Op "transpose" :inputs ["x"] :stage transpose-args :rule transpose-type
       :torch ["torch.t" "torch.Tensor.t" "torch.transpose" "torch.Tensor.transpose"]
       :forward ['(ht_transpose out x (planes x) (dim x -2) (dim x -1))]
       :gradient (fn [gy y x] [(call "transpose" gy)]))
   (Op "matmul" :inputs ["a" "b"] :stage matmul-args :rule matmul-type
       :torch ["torch.matmul" "torch.Tensor.matmul" "torch.mm" "torch.Tensor.mm"]
       :forward ['(ht_matmul_fwd out a b 1 (rows a) (cols a) (dim b 1))]
       :gradient (fn [gy y a b] [(call "matmul_grad_a" gy a b) (call "matmul_grad_b" gy a b)]))
   (Op "matmul_grad_a" :inputs ["gy" "a" "b"] :rule (fn [gy a b] a)
       :forward ['(ht_matmul_bwd_a out gy b 1 (rows a) (cols a) (dim b 1))])
   (Op "matmul_grad_b" :inputs ["gy" "a" "b"] :rule (fn [gy a b] b)
       :forward ['(ht_matmul_bwd_b out gy a 1 (rows a) (cols a) (dim b 1) 0)])
   (Op "bmm" :inputs ["a" "b"] :torch ["torch.bmm" "torch.Tensor.bmm"] :rule bmm-type
       :forward ['(ht_matmul_fwd out a b (dim a 0) (dim a 1) (dim a 2) (dim b 2))]
       :gradient (fn [gy y a b] [(call "bmm_grad_a" gy a b) (call "bmm_grad_b" gy a b)]))
   (Op "bmm_grad_a" :inputs ["gy" "a" "b"] :rule (fn [gy a b] a)
       :forward ['(ht_matmul_bwd_a out gy b (dim a 0) (dim a 1) (dim a 2) (dim b 2))])
   (Op "bmm_grad_b" :inputs ["gy" "a" "b"] :rule (fn [gy a b] b)
       :forward ['(ht_matmul_bwd_b out gy a (dim a 0) (dim a 1) (dim a 2) (dim b 2) 0)])

   (Op "narrow" :inputs ["x"] :attrs ["dim" "start" "length"]
       :torch ["torch.narrow" "torch.Tensor.narrow"] :stage narrow-args :rule narrow-type
       :forward {"float32" ['(ht_narrow_fwd out x (outer x dim) (dim x dim) start length (inner x dim))]
                 "int64" ['(ht_narrow_i64 out x (outer x dim) (dim x dim) start length (inner x dim))]}
       :gradient (fn [gy y x dim start length] [(call "narrow_grad" gy x dim start)]))
   (Op "narrow_grad" :inputs ["gy" "x"] :attrs ["dim" "start"] :rule (fn [gy x dim start] x)
       :forward ['(ht_narrow_bwd out gy (outer x dim) (dim x dim) start (dim gy dim) (inner x dim) 0)])
   ;; torch.cat and torch.stack of several tensors are cats of two (hytorch/tensors.py)
   (Op "cat" :inputs ["a" "b"] :attrs ["dim"] :rule cat-type
       :forward {"float32" ['(ht_cat_fwd out a b (outer a dim) (dim a dim) (dim b dim) (inner a dim))]
                 "int64" ['(ht_cat_i64 out a b (outer a dim) (dim a dim) (dim b dim) (inner a dim))]}
       :gradient (fn [gy y a b dim] [(call "cat_grad" gy a b dim 0) (call "cat_grad" gy a b dim 1)]))
   (Op "cat_grad" :inputs ["gy" "a" "b"] :attrs ["dim" "second"]
       :rule (fn [gy a b dim second] (if second b a))
       :forward ['(ht_cat_bwd out gy (outer a dim) (dim a dim) (dim b dim) (inner a dim) second 0)])

   ;; the other nodes of backward passes (backend/grad.hy)
   (Op "ones_like" :inputs ["l"] :rule (fn [l] l) :forward ['(ht_fill out 1.0 (numel l))])
   (Op "add_grads" :inputs ["g1" "g2"] :rule (fn [g1 g2] g1)
       :forward ['(ht_add out g1 g2 (numel g1))])
   (Op "mul_grad" :inputs ["gy" "other"] :rule (fn [gy other] gy)
       :forward ['(ht_mul_bwd out NULL gy NULL other (numel gy) 0)])
   (Op "sum_rows" :inputs ["gy" "v"] :rule (fn [gy v] v)
       :forward ['(ht_fill out 0.0 (cols gy)) '(ht_sum_rows out gy (rows gy) (cols gy))])
   (Op "dot_grad_input" :inputs ["gy" "w"] :rule dot-grad-input-type
       :forward ['(ht_linear_bwd_input out gy w (rows gy) (dim w 1) (dim w 0) 0)])

   ;; bespoke ops: their own IR nodes, rendered and differentiated outside the table
   (Op "dot" :inputs ["w" "x"] :rule dot-type)
   ;; torch.Tensor.add: what `p + x` calls for a module's parameter p and a staged x
   (Op "+" :inputs ["a" "b"] :torch ["torch.add" "torch.Tensor.add"]
       :rule (fn [a b] (elementwise-type "+" a b)))
   (Op "-" :inputs ["a" "b"] :torch ["torch.sub" "torch.Tensor.sub"]
       :rule (fn [a b] (elementwise-type "-" a b)))
   (Op "*" :inputs ["a" "b"] :torch ["torch.mul" "torch.Tensor.mul"]
       :rule (fn [a b] (elementwise-type "*" a b)))
   (Op "==" :inputs ["a" "b"] :torch ["torch.eq" "torch.Tensor.eq"] :rule compare-type)
   (Op "view" :inputs ["x"] :attrs ["dims"] :torch ["torch.Tensor.view" "torch.Tensor.reshape"]
       :rule view-type)])

(setv OPS (dfor op TABLE op.name op))
