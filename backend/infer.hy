"Type inference as one pass over the IR, before rendering.

Most values' kinds follow from what they are made of, in program order. Two do not: a cell's
(`new`) is the join of every value `set` into it, wherever that is, and a staged function's
parameters' and result's are the joins of its calls' arguments and of its body's result (it
may call itself). The pass walks the program, joining what it sees, until neither changes,
then writes each cell's kind into its node, so that the renderer renders once:

  (infer (parse-ir \"(def f (in) (begin (begin (let c new (let s (set c 1) (let t (set c 0.5)
    (let r (get c) r)))))))\") [\"int\"])
  ; => Typing: .program has (let c (new float) ...), .functions {}

A cell's kind in the IR: `(new int)`, `(new float)`, `(new bool)`, `(new (tensor (DIMS) DTYPE))`
and `(new (tensor (DIMS) DTYPE grad))` for tensors that depend on a trainable variable. A
typed `new` starts from its kind, so the pass's output is a fixed point of it.

The pass is lenient: a node it cannot type (a malformed one, a shape that does not fit) has
no kind here and the renderer reports it, with its own message. Only kinds that do not join
(KindConflict) are reported by the pass."

(import hytorch.ir.syntax [Sym chain-lets chain-of]
        hytorch.ir.types [TensorType ListType]
        hytorch.ir.ops [OPS dot-type elementwise-type compare-type view-type]
        hytorch.ir.optimizers [optimizer-node?]
        hytorch.backend.c-out [C-TYPES]
        hytorch.backend.kinds [KindConflict TensorCellKind join-kinds join-cell-kinds
                               arithmetic-kind bitwise-kind]
        hytorch.backend.scope [Binding Scope]
        hytorch.errors [IRError])

(setv NEW (Sym "new") TENSOR (Sym "tensor") GRAD (Sym "grad"))
(setv COMPARISON #{"==" "!=" "<" "<=" ">" ">="})
(setv BITWISE #{"&" "|" "^" "<<" ">>"})
(setv ARITHMETIC #{"+" "-" "*" "/" "//" "%" "**"})


(defn cell-kind-ir [kind]
  "A cell's kind as IR: (cell-kind-ir \"float\") => float"
  (if (isinstance kind TensorCellKind)
    [TENSOR (list kind.ttype.shape) (Sym kind.ttype.dtype) #* (if kind.requires-grad [GRAD] [])]
    (Sym kind)))


(defn read-cell-kind [spec]
  "The kind a typed `(new SPEC)` names (cell-kind-ir's inverse), or raise IRError."
  (match spec
    (| "int" "float" "bool") (str spec)
    ["tensor" dims dtype #* grad]
      :if (and (isinstance dims list) (all (gfor d dims (and (isinstance d int) (>= d 0))))
               (in dtype #("float32" "int64" "uint8")) (in grad #([] ["grad"])))
      (TensorCellKind (TensorType dims (str dtype)) (bool grad))
    _ (raise (IRError f"a cell's kind is int, float, bool or (tensor (DIMS) DTYPE [grad]), not {spec}"))))


(defclass Typing []
  "What the pass found: the program with each cell's kind in its `new` node, and each staged
  function's #(parameter kinds, result kind) by name."
  (defn __init__ [self program functions]
    (setv self.program program self.functions functions)))


(defn value-of [kind #** info]
  "A value of `kind` (None: unknown here) and what else is known of it, in the renderer's
  words (\"ttype\", \"requires-grad\", ...)."
  (Binding "" kind #** (dfor [k v] (.items info) (.replace k "_" "-") v)))


(setv UNKNOWN (value-of None))


(defclass Inference []
  "One program's walk, repeated until the cells' and functions' kinds settle."

  (defn __init__ [self program arg-kinds loader-dims]
    (setv self.program program self.arg-kinds arg-kinds self.loader-dims (or loader-dims {})
          self.cells []        ; kinds of the `new` nodes, in walk order
          self.functions {}    ; name -> #(parameter kinds, result kind)
          self.changed False))

  (defn run [self]
    (setv self.program (self.number-cells self.program)
          rounds 0)
    (while True
      (setv self.changed False self.nested 0)
      (self.walk-program)
      (+= rounds 1)
      (when (not self.changed)
        (return (Typing (self.annotate self.program) self.functions)))
      (when (> rounds (self.most-rounds))
        (raise (IRError "internal error: the types of the program's cells did not settle")))))

  (defn most-rounds [self]
    "A bound on the rounds the walk can take: each round widens some kind, and a kind widens
    at most four times (unknown, bool, int, float; a tensor cell's need of gradients once)."
    (+ 2 (* 4 (+ (len self.cells)
                 (sum (gfor [kinds _] (.values self.functions) (+ 1 (len kinds))))))))

  ;; ------------------------------------------------------------ the walk

  (defn walk-program [self]
    (match self.program
      ["def" _ params body] :if (and (isinstance params list) (= (len params) (len self.arg-kinds)))
        None
      _ (return))   ; (the renderer says what is wrong)
    (setv [_ _ params body] self.program
          scope (Scope))
    (self.declare-functions body)
    (for [[p kind] (zip params self.arg-kinds)]
      (.bind scope p (cond (isinstance kind ListType) (value-of "list" :ttype kind.element)
                           (isinstance kind TensorType) (value-of "tensor" :ttype kind :requires-grad False)
                           True (value-of kind))))
    (self.block body scope))

  (defn declare-functions [self body]
    (setv chain body)
    (while (and (isinstance chain list) chain (= (get chain 0) "begin") (= (len chain) 2))
      (setv chain (get chain 1)))
    (for [[_ rhs] (get (chain-lets chain) 0)]
      (match rhs
        ["def" f params _] :if (and (isinstance params list) (not-in (str f) self.functions))
          (setv (get self.functions (str f)) #((lfor _ params "bool") "bool"))
        _ None)))

  (defn block [self node scope]
    "The kind of a `(begin CHAIN)`'s result (None when it has none here)."
    (match node
      ["begin" chain] (self.chain chain (.child scope))
      _ UNKNOWN))

  (defn nested-block [self node scope]
    (+= self.nested 1)
    (try (self.block node scope)
         (finally (-= self.nested 1))))

  (defn chain [self node scope]
    (setv [lets result] (chain-lets node))
    (for [[name rhs] lets]
      (.bind scope name (self.rhs rhs scope (str name))))
    (if (and (isinstance result list) result (= (get result 0) "begin"))
      (self.block result scope)
      (self.atom result scope)))

  (defn atom [self x scope]
    (cond (isinstance x Sym) (self.lookup x scope)
          (isinstance x bool) (value-of "bool")
          (is x None) (value-of "none")
          (isinstance x int) (value-of "int")
          (isinstance x float) (value-of "float")
          (isinstance x str) (value-of "str")
          True UNKNOWN))

  (defn lookup [self x scope]
    (try (.lookup scope x) (except [IRError] UNKNOWN)))

  (defn kind-of [self x scope]
    (. (self.atom x scope) type))

  (setv PROPAGATE #(KindConflict))   ; the errors the lenient walk reports (see `rhs`)

  (defn rhs [self node scope target]
    "The value `(let TARGET NODE ...)` binds; UNKNOWN where the renderer will say more."
    (try
      (self.typed-rhs node scope target)
      (except [e self.PROPAGATE] (raise e))
      (except [e Exception] UNKNOWN)))

  (defn typed-rhs [self node scope target]
    (defn kind [x] (self.kind-of x scope))
    (defn tensor? [x] (= (kind x) "tensor"))
    (defn tensor [x] (self.atom x scope))
    (defn numbers? [#* xs] (all (gfor x xs (in (kind x) C-TYPES))))
    (match node
      ["new" _ n] (value-of "cell" :number n)
      ["def" name params body] :if (isinstance params list) (self.def-node name params body scope)
      ["call" f args] :if (and (isinstance args list) (= (kind f) "function"))
        (self.call-function f args scope)
      ["set" cell value] (self.set-cell cell value scope)
      ["get" cell] (self.get-cell cell scope)
      ["tensor" dims] (self.tensor-value dims "float32")
      ["tensor" dims dtype] (self.tensor-value dims (str dtype))
      ["variable" x volatile] (self.variable x volatile scope)
      ["dot" w x] (self.tensor-result (dot-type (self.ttype-of w scope) (self.ttype-of x scope))
                                      (tensor w) (tensor x))
      [op a b] :if (and (in op #("+" "-" "*")) (or (tensor? a) (tensor? b)))
        (self.tensor-result (elementwise-type (str op) (self.ttype-of a scope) (self.ttype-of b scope))
                            (tensor a) (tensor b))
      ["==" a b] :if (tensor? a)
        (value-of "tensor" :ttype (compare-type (self.ttype-of a scope) (self.ttype-of b scope))
                :requires-grad False)
      [op a b] :if (in op ARITHMETIC)
        (value-of (when (numbers? a b) (arithmetic-kind (str op) (kind a) (kind b))))
      [op a b] :if (in op COMPARISON) (value-of "bool")
      [op a b] :if (in op BITWISE)
        (value-of (when (numbers? a b) (bitwise-kind (str op) (kind a) (kind b))))
      ["~" a] (value-of "int")
      ["raise" _ _] (value-of "none")
      ["call" f args] :if (and (isinstance f Sym) (isinstance args list) (in f OPS)
                               (is-not (. (get OPS f) forward) None))
        (self.table-op (get OPS f) args scope)
      ["call" x "view" dims] :if (isinstance dims list)
        (value-of "tensor" :ttype (view-type (self.ttype-of x scope) dims)
                :requires-grad (self.requires (self.atom x scope)))
      ["call" x (| "backward" "backward_and_step") #* _rest] (tensor x)
      ["call" o (| "zero_grad" "step" "step_remaining")] (value-of "none")
      ["array-get" x "data" _] (value-of (if (= (. (self.ttype-of x scope) dtype) "float32") "float" "int"))
      [name settings #* params] :if (optimizer-node? [name settings #* params])
        (value-of "optimizer")
      ["transform" #* _rest] (value-of "transform")
      ["loader" spec] (self.loader spec target)
      ["len" _] (value-of "int")
      ["nth" xs _] (value-of "tensor" :ttype (get (. (self.atom xs scope) info) "ttype") :requires-grad False)
      [(| "for_dataloader" "for_dataloader_pipelined") loader names #* rest]
        (self.for-dataloader loader names (get rest -1) scope)
      ["if" test then else] (self.if-node then else scope)
      (| ["while" test body] ["while_taped" _ test body])
        (do (self.nested-block test scope) (self.nested-block body scope) (value-of "none"))
      [(| "print" "printf") _] (value-of "none")
      _ (if (isinstance node list) UNKNOWN (self.atom node scope))))

  ;; ------------------------------------------------------------ tensors

  (defn ttype-of [self x scope]
    (setv v (self.atom x scope))
    (if (= v.type "tensor") (get v.info "ttype") (raise (ValueError "not a tensor"))))

  (defn requires [self #* values]
    "Whether any of the values needs gradients."
    (any (gfor b values (.get b.info "requires-grad" False))))

  (defn tensor-result [self t #* inputs]
    (value-of "tensor" :ttype t :requires-grad (self.requires #* inputs)))

  (defn tensor-value [self dims dtype]
    (value-of "tensor" :ttype (TensorType (list dims) dtype) :requires-grad False))

  (defn variable [self x volatile scope]
    "A trainable variable is made of a float32 tensor at the top level (c_tensor.hy)."
    (setv b (self.atom x scope)
          t (get b.info "ttype"))
    (if (or volatile self.nested (!= t.dtype "float32") (.get b.info "param"))
      (value-of "tensor" :ttype t :requires-grad (.get b.info "requires-grad" False)
              :param (.get b.info "param"))
      (value-of "tensor" :ttype t :requires-grad True :param True)))

  (defn table-op [self op args scope]
    (setv n (len op.inputs)
          inputs (lfor x (cut args n) (when (is-not x None) (self.atom x scope)))
          types (lfor b inputs (when b (get b.info "ttype"))))
    (value-of "tensor" :ttype (op.result-type types (cut args n None))
            :requires-grad (and op.differentiable
                                (self.requires #* (lfor b inputs :if b b)))))

  ;; ------------------------------------------------------------ loaders

  (defn loader [self spec target]
    (match spec
      ["MNIST" _ _ _ #* rest]
        (do (setv batch (if rest (get rest 0) 1)
                  [rows cols] (.get self.loader-dims target #(28 28)))
            (self.loader-value batch [1 rows cols] [] "int64"))
      ["arrays" input-shape target-shape dtype batch]
        (self.loader-value batch input-shape target-shape (str dtype))
      _ UNKNOWN))

  (defn loader-value [self batch input-shape target-shape dtype]
    (value-of "loader" :data (TensorType [batch #* input-shape] "float32")
            :target (TensorType [batch #* target-shape] dtype)))

  (defn for-dataloader [self loader names body scope]
    (setv lb (self.atom loader scope)
          inner (.child scope)
          [index data target] names
          rows f"rows of {data}")   ; a batch's tag (the renderer's is a C variable)
    (.bind inner index (value-of "int"))
    (for [[name t] [[data (get lb.info "data")] [target (get lb.info "target")]]]
      (.bind inner name (value-of "tensor" :ttype (TensorType t.shape t.dtype rows) :requires-grad False)))
    (self.nested-block body inner)
    (value-of "none"))

  ;; ------------------------------------------------------------ control and cells

  (defn if-node [self then else scope]
    (setv a (. (self.nested-block then scope) type)
          b (. (self.nested-block else scope) type))
    (if (or (= a "none") (= b "none") (is a None) (is b None))
      (value-of "none")
      (value-of (join-kinds a b))))

  (defn cell-of [self cell scope]
    (setv b (self.atom cell scope))
    (if (= b.type "cell") b (raise (ValueError "not a cell"))))

  (defn set-cell [self cell value scope]
    (setv n (get (. (self.cell-of cell scope) info) "number")
          v (self.atom value scope)
          kind (cond (= v.type "tensor")
                       (TensorCellKind (get v.info "ttype") (.get v.info "requires-grad" False))
                     (in v.type C-TYPES) v.type
                     True None)
          old (get self.cells n)
          new (join-cell-kinds old kind))
    (when (!= old new)
      (setv (get self.cells n) new self.changed True))
    (value-of "none"))

  (defn get-cell [self cell scope]
    (setv kind (get self.cells (get (. (self.cell-of cell scope) info) "number")))
    (if (isinstance kind TensorCellKind)
      (value-of "tensor" :ttype kind.ttype :requires-grad kind.requires-grad)
      (value-of (or kind "int"))))

  ;; ------------------------------------------------------------ staged functions

  (defn def-node [self name params body scope]
    (setv [kinds result] (get self.functions (str name))
          inner (Scope))   ; (a function sees only its parameters and the other functions)
    (for [[f _] (.items self.functions)]
      (.bind inner f (value-of "function" :name f)))
    (for [[p k] (zip params kinds)]
      (.bind inner p (value-of k)))
    (setv body-kind (. (self.block body inner) type))
    (when (and (is-not body-kind None) (!= body-kind result))
      (setv (get self.functions (str name)) #(kinds body-kind) self.changed True))
    (value-of "function" :name (str name)))

  (defn call-function [self f args scope]
    (setv key (get (. (self.atom f scope) info) "name")
          [kinds result] (get self.functions key)
          seen (lfor [a old] (zip args kinds) (join-kinds old (self.kind-of a scope))))
    (when (and (= (len args) (len kinds)) (!= seen kinds))
      (setv (get self.functions key) #(seen result) self.changed True))
    (value-of result))

  ;; ------------------------------------------------------------ numbering and annotating cells

  (defn number-cells [self node]
    "`node` with each `new` (bare, or typed: its kind is where the cell's starts) numbered,
    `(new KIND-OR-None N)`, N its cell in self.cells."
    (defn number [rhs]
      (setv spec (if (= rhs "new") None (read-cell-kind (get rhs 1))))
      (.append self.cells spec)
      [NEW spec (- (len self.cells) 1)])
    (self.map-news node number))

  (defn annotate [self node]
    "`node` with each numbered `new` replaced by `(new KIND)` of its cell."
    (self.map-news node
      (fn [rhs] [NEW (cell-kind-ir (or (get self.cells (get rhs 2)) "int"))])))

  (defn map-news [self node f]
    "`node` with each `new` let's right-hand side replaced by f of it (chains iteratively)."
    (cond
      (and (isinstance node list) node (= (get node 0) "let") (= (len node) 4))
        (do (setv [lets result] (chain-lets node))
            (chain-of (lfor [name rhs] lets
                            [name (if (or (= rhs "new")
                                          (and (isinstance rhs list) rhs (= (get rhs 0) "new")))
                                    (f rhs)
                                    (self.map-news rhs f))])
                      (self.map-news result f)))
      (isinstance node list) (lfor x node (self.map-news x f))
      True node)))


(defn infer [program arg-kinds [loader-dims None]]
  "The Typing of `program` (a `def` node) whose parameters have `arg-kinds`."
  (.run (Inference program arg-kinds loader-dims)))
