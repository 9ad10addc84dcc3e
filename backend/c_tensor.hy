"Rendering the IR's tensor nodes to C: storage, the kernel calls of the op table
(hytorch/ir/ops.hy) and the bespoke ops (dot, + - * of tensors, ==, view). A mixin of
CRenderer (c_render.hy), whose `rhs` dispatches to these; loaders are in c_data.hy, the
optimizer and the backward pass in c_train.hy.

Storage: tensors bound at the top level (parameters, constants) live in the program's state;
every other tensor is carved from an arena that is reset after each loop iteration, so a
training loop allocates nothing. Sizes are fixed when the program is staged; a tensor read from
a data loader has its first dimension set by the rows of the current batch (`batched`)."

(import math
        hytorch.backend.c_out [Out c-float excerpt indent]
        hytorch.backend.c_train [Param]
        hytorch.ir.syntax [Sym print-ir]
        hytorch.backend.scope [Binding]
        hytorch.ir.types :as shapes
        hytorch.ir.types [TensorType ShapeError ELEMENT-BYTES]
        hytorch.ir.ops [dot-type elementwise-type row-vector-operand compare-type view-type]
        hytorch.backend.module-state [ModuleState]
        hytorch.ir.slots [SlotRole]
        hytorch.errors [IRError])

(setv C-ELEMENT {"float32" "float" "int64" "int64_t" "uint8" "uint8_t"})
(setv INIT-SEED "0x48795465ull")   ; seed of the uniform init of tensors with no bound value
;; The dropout masks' splitmix64 state when a program's state is made: a constant, so that a
;; program draws the same masks each time it is made and its C does not change with a seed.
(setv DROPOUT-SEED "0x44726f704f7574ull")


(defclass Operand []
  "What a word of a kernel call stands for: a C expression, its TensorType (None for an
  attribute or an absent input) and the C name of its auxiliary buffer (or None)."
  (defn __init__ [self expr type aux]
    (setv self.expr expr self.type type self.aux aux)))


(defclass TensorRendering []
  "Tensor nodes. Expects from CRenderer: self.names, self.nested and self.state."

  ;; ------------------------------------------------------------ helpers

  (defn reset-tensor-state [self]
    (setv self.state (ModuleState self.names)
          self.rng None self.trainables [] self.fused-vars {} self.pipeline None))

  (defn shape-checked [self rule #* args]
    (try (rule #* args)
      (except [e ShapeError] (raise (IRError (str e))))))

  (defn tensor [self x scope [what "this operation"]]
    "The binding of an atom that must be a tensor."
    (when (not (isinstance x Sym))
      (raise (IRError f"{what} needs a tensor, got {(print-ir x)}")))
    (setv b (.lookup scope x))
    (when (!= b.type "tensor")
      (raise (IRError f"{what} needs a tensor, but `{x}` is a {b.type}")))
    b)

  (defn is-tensor [self x scope]
    (and (isinstance x Sym) (= (. (.lookup scope x) type) "tensor")))

  (defn ttype [self b] (get b.info "ttype"))

  (defn numel [self t]
    "C expression of a tensor type's element count (rows of a batch count at run time)."
    (if t.batched
      (do (setv rest (math.prod (cut t.shape 1 None)))
          (if (= rest 1) t.batched f"{t.batched} * {rest}"))
      (str t.numel)))

  (defn rows-cols [self t]
    "#(rows cols) of a tensor seen as a matrix over its last dimension."
    (setv cols (if t.shape (get t.shape -1) 1))
    (if t.batched
      (do (setv rest (math.prod (cut t.shape 1 -1)))
          #((if (= rest 1) t.batched f"{t.batched} * {rest}") cols))
      #((str (math.prod (cut t.shape 0 -1))) cols)))

  (defn alloc [self name t]
    "Arena storage for a tensor of type `t`: #(lines cname)."
    (setv cname (self.names.fresh name)
          bytes (* (max t.numel 1) (get ELEMENT-BYTES t.dtype)))
    (self.state.arena-tensor bytes)
    #([f"{(get C-ELEMENT t.dtype)} *{cname} = ht_arena_alloc(&ht_s->arena, {bytes});"] cname))

  (defn tensor-out [self lines cname t requires-grad #** info]
    (Out lines cname "tensor" :declared True
         :info {"ttype" t "requires-grad" requires-grad #** info}))

  (defn requires [self #* bindings]
    (any (gfor b bindings (.get b.info "requires-grad" False))))

  ;; ------------------------------------------------------------ storage nodes

  (defn tensor-node [self dims dtype target]
    (when self.nested
      (raise (IRError "a (tensor ...) node must be at the top level of the program")))
    (when (not (and (isinstance dims list)
                    (all (gfor d dims (and (isinstance d int) (not (isinstance d bool)) (>= d 0))))))
      (raise (IRError f"a tensor's shape is a list of sizes, such as (tensor (50 784)), not {(excerpt dims)}")))
    (when (not-in dtype C-ELEMENT)
      (raise (IRError (+ f"unknown tensor element type {dtype}: one of " (.join ", " C-ELEMENT)))))
    (setv t (try (TensorType (list dims) dtype) (except [e ShapeError] (raise (IRError (str e)))))
          expr (self.state.buffer target f"{(get C-ELEMENT dtype)} *"
                                  (* (max t.numel 1) (get ELEMENT-BYTES dtype)) f"(tensor {dims})"))
    (when (= dtype "float32")
      (self.state.on-init f"ht_rng_fill_uniform(&rng, {expr}, {t.numel}, -0.5f, 0.5f);"))
    (self.state.slot expr SlotRole.TENSOR :sym target :numel t.numel :dtype dtype :shape (list t.shape))
    (Out [] expr "tensor" :declared True :info {"ttype" t "requires-grad" False}))

  (defn variable-node [self x volatile scope target]
    (setv b (self.tensor x scope "variable")
          t (self.ttype b))
    (if (or volatile self.nested (!= t.dtype "float32") (is-not (.get b.info "param") None))
      (Out [] b.cname "tensor" :declared True
           :info {"ttype" t "requires-grad" (.get b.info "requires-grad" False)
                  "param" (.get b.info "param")})
      (do (setv numel t.numel
                grad (self.state.buffer f"{target}_grad" "float *" (* 4 numel) f"gradient of {target}")
                [has _] (self.state.field f"{target}_has_grad" "int64_t")
                [first _] (self.state.field f"{target}_first_step" "int64_t")
                param (Param target (str x) b.cname grad has first numel t))
          (self.state.on-init f"{first} = 1;")
          (.append self.trainables param)
          (self.state.slot f"&{first}" SlotRole.FIRST-STEP :sym target :tensor (str x))
          (Out [] b.cname "tensor" :declared True
               :info {"ttype" t "requires-grad" True "param" param}))))

  (defn array-get [self x index scope]
    (setv b (self.tensor x scope "array-get")
          t (self.ttype b))
    (when (not (and (isinstance index int) (<= 0 index (- (max t.numel 1) 1))))
      (raise (IRError f"array-get index {index} is out of range for {(shapes.show t)}")))
    (if (= t.dtype "float32")
      (Out [] f"(double){b.cname}[{index}]" "float")
      (Out [] f"{b.cname}[{index}]" "int")))

  ;; ------------------------------------------------------------ forward ops

  (defn dot [self w x scope target node]
    (setv wb (self.tensor w scope "dot") xb (self.tensor x scope "dot")
          t (self.shape-checked dot-type (self.ttype wb) (self.ttype xb))
          [out in] (. (self.ttype wb) shape)
          [rows _] (self.rows-cols (self.ttype xb))
          pipelined (and self.pipeline (= (get self.pipeline "dot") target)
                         (= (get self.pipeline "weight") (str w))))
    (setv [lines y] (if pipelined
                      #([] (get self.pipeline "out-cur"))
                      (self.alloc target t))
          call f"ht_linear_fwd({y}, {xb.cname}, {wb.cname}, NULL, {rows}, {in}, {out});")
    (self.tensor-out [#* lines (if pipelined
                                 (.format "if (!{}) {}" (get self.pipeline "ready") call)
                                 call)]
                     y t (self.requires wb xb)))

  (defn elementwise [self op a b scope target node]
    (setv ab (self.tensor a scope op) bb (self.tensor b scope op)
          ta (self.ttype ab) tb (self.ttype bb)
          t (self.shape-checked elementwise-type op ta tb)
          [lines y] (self.alloc target t)
          kernel (get {"+" "ht_add" "-" "ht_sub" "*" "ht_mul"} op)
          [rows cols] (self.rows-cols t))
    (.append lines
      (match (row-vector-operand op ta tb)
        None f"{kernel}({y}, {ab.cname}, {bb.cname}, {(self.numel t)});"
        1 f"ht_add_rowvec({y}, {ab.cname}, {bb.cname}, {rows}, {cols});"
        0 f"ht_add_rowvec({y}, {bb.cname}, {ab.cname}, {rows}, {cols});"))
    (self.tensor-out lines y t (self.requires ab bb)))

  (defn table-op [self op args scope target node]
    "An op of the table (hytorch/ir/ops.hy): `(call NAME (INPUTS... ATTRS...))`, rendered as
    its kernel calls."
    (when (!= (len args) (len op.operands))
      (raise (IRError (+ f"`{op.name}` takes {(len op.operands)} operand(s) ("
                         (.join " " op.operands) f"), got {(excerpt [(Sym "call") (Sym op.name) args])}"))))
    (setv n (len op.inputs)
          inputs (lfor [x name] (zip (cut args n) op.inputs)
                       (if (and (is x None) (in name op.optional))
                         None
                         (self.tensor x scope op.name)))
          attrs (cut args n None)
          present (lfor b inputs :if (is-not b None) b)
          types (lfor b inputs (when b (self.ttype b)))
          operands (dict (zip op.operands
                              [#* (lfor b inputs (if b
                                                   (Operand b.cname (self.ttype b) (.get b.info "aux"))
                                                   (Operand "NULL" None None)))
                               #* (lfor [a name] (zip attrs op.attrs)
                                        (Operand (self.c-constant op a name) None None))]))
          t (self.shape-checked op.result-type types attrs)
          calls (self.shape-checked op.kernel-calls types)
          [lines y] (self.alloc target t)
          aux (when op.aux
                (self.alloc f"{target}_aux" (TensorType t.shape op.aux t.batched))))
    (setv env {"out" (Operand y t None) #** operands})
    (when aux
      (.extend lines (get aux 0))
      (setv (get env "aux") (Operand (get aux 1) None None)))
    (self.tensor-out [#* lines #* (gfor form calls line (self.kernel-statement form env) line)]
                     y t (and op.differentiable (self.requires #* present))
                     #** (if aux {"aux" (get aux 1)} {})))

  (defn c-constant [self op x name]
    "An attribute of a table op as a C constant."
    (cond (isinstance x bool) (if x "1" "0")
          (isinstance x int) (self.int-literal x)   ; (INT64_MIN has no C literal)
          (isinstance x float) (c-float x)
          True (raise (IRError f"`{op.name}`'s {name} must be a number, got {(excerpt x)}"))))

  (defn kernel-statement [self form env]
    "The C statements of a kernel-call form of the op table, `env` holding each word's
    Operand: (ht_relu_fwd out x (numel x)) => [\"ht_relu_fwd(y, x, 6);\"]; a workspace is
    allocated from the arena before the call."
    (setv before []
          statement (if (= (get form 0) "check")
                      f"if ({(self.kernel-call (get form 1) env before)} != HT_OK) return HT_ERROR;"
                      (+ (self.kernel-call form env before) ";")))
    [#* before statement])

  (defn kernel-call [self form env before]
    (setv [kernel #* args] form
          c-args (lfor a args (self.kernel-arg a env before)))
    (+ kernel "(" (.join ", " c-args) ")"))

  (defn kernel-arg [self a env before]
    "A word of a kernel call as C (see ops.hy's docstring); statements it needs first go to
    `before`."
    (defn type-of [x] (. (get env x) type))
    (match a
      ["numel" x] (self.numel (type-of x))
      ["rows" x] (get (self.rows-cols (type-of x)) 0)
      ["cols" x] (str (get (self.rows-cols (type-of x)) 1))
      ["planes" x] (self.planes (type-of x))
      ["dim" x i] (self.dim-size (type-of x) (self.axis-word i env (type-of x)))
      ["outer" x i] (self.dims-product (type-of x) 0 (self.axis-word i env (type-of x)))
      ["inner" x i] (self.dims-product (type-of x) (+ (self.axis-word i env (type-of x)) 1) None)
      ["item" x] f"{(. (get env x) expr)}[0]"
      ["aux" x] (or (. (get env x) aux)
                    (raise (IRError f"`{x}` has no auxiliary buffer (it is not the result of an op with one)")))
      ["workspace" size] (self.workspace (self.kernel-call size env before) before)
      "rng" (self.dropout-rng)
      "NULL" "NULL"
      _ (cond (isinstance a Sym) (. (get env a) expr)
              (isinstance a float) (c-float a)
              (and (isinstance a int) (not (isinstance a bool))) (self.int-literal a)
              True (str a))))

  (defn axis-word [self i env t]
    "The dimension of a tensor of type `t` a kernel-call word names, from 0: a number or an
    attribute's name (`(dim x dim)`), < 0 counting from the end."
    (% (if (isinstance i Sym) (int (. (get env i) expr)) i) (max t.ndim 1)))

  (defn dims-product [self t start end]
    "C expression of the product of a tensor's sizes along dimensions `start` to `end`
    (excluded; None: to the last); the rows of the current batch for dimension 0 of a
    batched tensor."
    (setv end (if (is end None) t.ndim end)
          rows (and t.batched (= start 0) (> end 0))
          rest (math.prod (cut t.shape (if rows 1 start) end)))
    (cond (not rows) (str rest)
          (= rest 1) t.batched
          True f"{t.batched} * {rest}"))

  (defn dim-size [self t i]
    "C expression of a tensor's size along dimension `i`: the current batch's rows for the
    first dimension of a batched tensor."
    (setv d (% i t.ndim))
    (if (and (= d 0) t.batched) t.batched (str (get t.shape d))))

  (defn planes [self t]
    "C expression of the number of matrices over a tensor's last two dimensions."
    (setv rest (math.prod (cut t.shape (if t.batched 1 0) -2)))
    (cond (not t.batched) (str rest)
          (= rest 1) t.batched
          True f"{t.batched} * {rest}"))

  (defn workspace [self size before]
    "Scratch floats from the arena, as many as the C expression `size` (constant for the
    program: sizes are fixed when it is staged); the arena grows by as much when it is made."
    (setv cname (self.names.fresh "workspace")
          bytes f"(size_t)({size}) * sizeof(float)")
    (self.state.arena-workspace bytes)
    (.append before f"float *{cname} = ht_arena_alloc(&ht_s->arena, {bytes});")
    cname)

  (defn dropout-rng [self]
    "A pointer to the program's splitmix64 state for random masks, made at its first use."
    (when (is self.rng None)
      (setv [expr _] (self.state.field "dropout_rng" "uint64_t" "splitmix64 state of dropout masks"))
      (self.state.on-init f"{expr} = {DROPOUT-SEED};")
      (self.state.slot f"&{expr}" SlotRole.RNG)
      (setv self.rng expr))
    f"&{self.rng}")

  (defn tensor-compare [self op a b scope target]
    (setv ab (self.tensor a scope op) bb (self.tensor b scope op)
          t (self.shape-checked compare-type (self.ttype ab) (self.ttype bb)))
    (when (!= op "==")
      (raise (IRError "comparing tensors is supported as == of int64 tensors of one shape")))
    (setv [lines y] (self.alloc target t))
    (self.tensor-out [#* lines f"ht_eq_i64({y}, {ab.cname}, {bb.cname}, {(self.numel t)});"] y t False))

  (defn view [self x dims scope target node]
    (setv b (self.tensor x scope "view")
          t (self.shape-checked view-type (self.ttype b) dims))
    (self.tensor-out [] b.cname t (self.requires b))))
