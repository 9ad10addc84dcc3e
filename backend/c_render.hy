"IR to C, one `match` clause per node kind.

  (render-c (parse-ir \"(def power3 (in) (begin (begin (let x0 (* in 1) x0))))\") [\"int\"])
  ; => {\"source\" ... \"int64_t v_x0 = (v_in * 1);\" ... \"cdef\" ... \"result_kind\" \"int\" \"slots\" []}

Scalars: int → int64_t, float → double, bool → int, with Python's arithmetic (c_runtime/
ht_scalar.h) and printing (ht_print.h). A `let` declares a C variable (named by CNames, so
no IR name can clash with another or with C's); `(new KIND)`
declares a cell (of the kind infer.hy found: the join of the values `set` into it); blocks
become C blocks. Tensor nodes are in c_tensor.hy (an op
of the table in hytorch/ir/ops.hy is one clause of `rhs`, rendered from its entry), loaders in
c_data.hy, the optimizer and gradients in c_train.hy.
Errors return a status that Python turns into an exception; loops poll for Ctrl-C."

(import hytorch.backend.c-out [Out indent excerpt c-comment c-double C-TYPES]
        hytorch.backend.c-data [DataRendering]
        hytorch.backend.c-tensor [TensorRendering INIT-SEED C-ELEMENT ELEMENT-BYTES]
        hytorch.backend.c-train [TrainingRendering GRADIENT-NODES]
        hytorch.backend.c-bptt [LoopGradRendering]
        hytorch.backend.kinds [TensorCellKind join-kinds join-cell-kinds arithmetic-kind bitwise-kind]
        hytorch.backend.infer [infer read-cell-kind]
        hytorch.backend.fusion [fuse]
        hytorch.backend.autodiff [differentiate]
        hytorch.ir.syntax [Sym print-ir chain-lets real-number? INT64-MIN INT64-MAX]
        hytorch.ir.types [TensorType ListType ShapeError]
        hytorch.ir.ops [OPS]
        hytorch.ir.optimizers [optimizer-node?]
        hytorch.ir.slots [SlotRole]
        hytorch.backend.printf [c-spec c-string c-print-text]
        hytorch.ir.format [format-pieces]
        hytorch.backend.scope [Binding Scope CNames]
        hytorch.errors [IRError show-int])

;; Values that are not numbers: a string constant, chosen by a staged `if` (no NUL inside).
(setv C-VALUE-TYPES {#** C-TYPES "str" "const char *"})
(setv BITWISE #{"&" "|" "^" "<<" ">>"})
(setv SHIFTS {"<<" "ht_shl_i64" ">>" "ht_shr_i64"})
(setv ARITHMETIC #{"+" "-" "*" "/" "//" "%" "**"})
(setv COMPARISON #{"==" "!=" "<" "<=" ">" ">="})
;; The ops of the table with kernels (the others are IR nodes of their own, below).
(setv KERNEL-OPS (dfor [name op] (.items OPS) :if (is-not op.forward None) name op))


(defclass CRenderer [TensorRendering DataRendering TrainingRendering LoopGradRendering]
  "Renders one typed IR program (infer.hy's Typing: its cells' kinds are in their `new`
  nodes, its staged functions' kinds in `functions`); `arg-kinds` are its parameters' kinds
  (\"int\", \"float\", \"bool\", a TensorType for a tensor parameter, or \"object\" for a
  parameter that only stands for lifted values), and `loader-dims` the image size of each
  bound data loader."

  (defn __init__ [self typing arg-kinds [loader-dims None]]
    (setv self.program typing.program
          self.function-kinds typing.functions
          self.arg-kinds arg-kinds
          self.loader-dims (or loader-dims {})))

  (defn render [self]
    "The C source, the cffi declarations, the result kind and the state's slots."
    (setv self.names (CNames)
          self.nested 0
          self.loops {}
          self.replaying 0
          self.in-backward False
          self.function-lines []
          self.raises [])
    (self.reset-tensor-state)
    (self.render-function))

  (defn disagree [self what]
    "An IRError for a kind the renderer finds other than the type pass found (a bug)."
    (IRError f"internal error: the type pass and the renderer disagree about {what}"))

  (defn render-function [self]
    (match self.program
      ["def" name params body] :if (isinstance params list) None
      _ (raise (IRError "a program must have the form (def NAME (PARAMS) (begin ...))")))
    (setv [_ name params body] self.program
          scope (Scope)
          c-params [])
    (self.declare-functions body scope)
    (when (!= (len params) (len self.arg-kinds))
      (raise (IRError f"{name} has {(len params)} parameters but {(len self.arg-kinds)} types were given")))
    (for [[p kind] (zip params self.arg-kinds)]
      (cond
        (= kind "object") (.bind scope p (Binding "0" "object"))
        (isinstance kind ListType)   ; the caller's tensors, one after another, and how many
          (do (setv cname (self.names.fresh p)
                    length (self.names.fresh f"{p}_length"))
              (.bind scope p (Binding cname "list" :ttype kind.element :length length))
              (.extend c-params [f"{(get C-ELEMENT kind.element.dtype)} *{cname}"
                                 f"int64_t {length}"]))
        (isinstance kind TensorType)   ; the caller's array, read in place
          (do (setv cname (self.names.fresh p))
              (.bind scope p (Binding cname "tensor" :ttype kind :requires-grad False))
              (.append c-params f"{(get C-ELEMENT kind.dtype)} *{cname}"))
        True
          (do (setv cname (self.names.fresh p))
              (.bind scope p (Binding cname kind))
              (.append c-params f"{(get C-TYPES kind)} {cname}"))))
    (setv [lines expr kind] (self.block body scope)
          [result-param store result-shape] (self.result-of expr kind))
    (setv signature (.join ", " ["ht_state *ht_s" #* c-params #* result-param])
          call-args (.join ", " ["ht_s" #* (gfor [p k] (zip params self.arg-kinds) :if (!= k "object")
                                                  :setv b (.lookup scope p)
                                                  e [b.cname #* (if (= b.type "list") [(get b.info "length")] [])]
                                                  e)
                                 #* (if result-param ["ht_result"] [])]))
    (setv loaders (self.state.has-slot SlotRole.LOADER))
    {"source" (.join "\n"
                [(c-comment f"Generated by HyTorch from (def {name} ...).")
                 "#include \"hytorch_rt.h\""
                 ""
                 #* (self.state.c-definitions INIT-SEED)
                 #* (if loaders
                      ["HT_EXPORT int ht_bind_loader(void *l, const uint8_t *images, const uint8_t *labels, int64_t count, int64_t rows, int64_t cols, int64_t batch_size, int shuffle, int drop_last, float mean, float std, uint64_t rng) {"
                       "  return ht_loader_bind(l, images, labels, count, rows, cols, batch_size, shuffle, drop_last, mean, std, rng);"
                       "}"
                       "HT_EXPORT uint64_t ht_loader_rng_state(void *l) { return ((ht_loader *)l)->rng; }"
                       ""]
                      [])
                 #* self.function-lines
                 f"static int ht_body({signature}) {{"
                 "  ht_s->arena.top = 0;"
                 "  ht_s->call_depth = 0;"
                 #* (indent lines)
                 #* (indent store)
                 "  return HT_OK;"
                 "}"
                 ""
                 f"HT_EXPORT int ht_run({signature}) {{"
                 "  ht_interrupt_begin();"
                 f"  int status = ht_body({call-args});"
                 "  ht_settle(); /* no work of the call goes on after it */"
                 "  return ht_interrupt_end(status);"
                 "}"
                 ""])
     "cdef" (.join "\n" ["typedef struct ht_state ht_state;"
                         "ht_state *ht_new(void);"
                         "void ht_delete(ht_state *);"
                         "const char *ht_last_error(void);"
                         "void *ht_slot(ht_state *, int);"
                         "int ht_bind_slot(ht_state *, int, void *);"
                         #* (if loaders
                              ["int ht_bind_loader(void *, const uint8_t *, const uint8_t *, int64_t, int64_t, int64_t, int64_t, int, int, float, float, uint64_t);"
                               "uint64_t ht_loader_rng_state(void *);"]
                              [])
                         f"int ht_run({signature});"])
     "raises" self.raises
     "result_kind" kind
     "result_shape" result-shape
     "slots" (self.state.slot-descriptions)})

  (defn raise-statement [self exception message]
    "C that stops the program with Python's `exception` (its name) and `message`: both stay on
    Python's side, in the rendered program's \"raises\" (any length, NUL too), the C returning
    only where it raised."
    (.append self.raises #(exception message))
    f"return ht_raised({(- (len self.raises) 1)});")

  (defn result-of [self expr kind]
    "How the program hands back its result: #(C parameter, the store, a tensor's shape).
    A tensor (of a fixed shape) is copied into an array the caller provides."
    (cond
      (= kind "none") #([] [] None)
      (in kind C-VALUE-TYPES) #([f"{(get C-VALUE-TYPES kind)} *ht_result"] [f"*ht_result = {expr};"] None)
      (and (= kind "tensor") (not (. (self.ttype self.result-binding) batched)))
        (do (setv t (self.ttype self.result-binding)
                  element (get C-ELEMENT t.dtype))
            #([f"{element} *ht_result"]
              [f"memcpy(ht_result, {expr}, {(* t.numel (get ELEMENT-BYTES t.dtype))});"]
              #((list t.shape) t.dtype)))
      True (raise (IRError (+ f"the program's result is a {kind}; return a number (e.g. (.item "
                              "loss)), a tensor of a fixed shape, or None")))))

  ;; ------------------------------------------------------------ blocks and lets

  (defn block [self node scope]
    "A `(begin CHAIN)` in a new scope: #(lines result-expr result-kind)."
    (match node
      ["begin" chain] (self.chain chain (.child scope))
      _ (raise (IRError f"expected (begin ...), found {(excerpt node)}"))))

  (defn lets-of [self node]
    "The [name rhs] pairs of a chain of lets, and what follows them."
    (setv [lets rest] (chain-lets node))
    (when (and (isinstance rest list) rest (= (get rest 0) "let"))   ; (one of another length)
      (raise (IRError f"a let needs a name, a value and a body: {(excerpt rest)}")))
    #(lets rest))

  (defn chain [self node scope]
    "Right-nested lets ending in a result."
    (setv [lets result] (self.lets-of node)
          lines [])
    (for [[name rhs] lets]
      (setv out (self.rhs rhs scope (str name)))
      (self.bind-out scope name out)
      (.extend lines out.lines))
    (when (and (isinstance result list) result (= (get result 0) "begin"))
      ;; a block as the result: the function body is (begin (begin CHAIN))
      (setv [inner expr kind] (self.block result scope))
      (return #([#* lines #* inner] expr kind)))
    (setv [expr kind] (self.atom result scope)
          self.result-binding (when (isinstance result Sym) (.lookup scope result)))
    #(lines expr kind))

  (defn bind-out [self scope name out]
    "Bind a let's name to what its right-hand side rendered (adding its declaration to
    out.lines)."
    (setv binding
          (cond out.declared (Binding out.expr out.type #** out.info)
                (and (is-not out.expr None) (!= out.type "none"))
                  (do (setv cname (self.names.fresh name))
                      (.append out.lines f"{(get C-VALUE-TYPES out.type)} {cname} = {out.expr};")
                      (Binding cname out.type #** out.info))
                True (Binding "0" "none")))
    (.bind scope name binding))

  (defn atom [self x scope]
    "#(C expression, kind) of an atom."
    (cond (isinstance x Sym) (do (setv b (.lookup scope x)) #(b.cname b.type))
          (isinstance x bool) #((if x "1" "0") "bool")
          (is x None) #("0" "none")
          (isinstance x int) #((self.int-literal x) "int")
          (isinstance x float) #((self.float-literal x) "float")
          (isinstance x str) #((self.string-literal x) "str")
          True (raise (IRError f"{(excerpt x)} cannot be used as a value here"))))

  (defn string-literal [self x]
    (when (in "\0" x)
      (raise (IRError f"the string {x !r} holds a NUL character, which a string value cannot")))
    (c-string x))

  (defn int-literal [self x]
    (cond (not (<= INT64-MIN x INT64-MAX))
            (raise (IRError f"the integer {(show-int x)} does not fit in 64 bits (-2**63 .. 2**63-1)"))
          (= x INT64-MIN) "INT64_MIN"
          ;; A plain literal is a C int, and so is a bool: (+ 1 2147483647) or (* b 65536)
          ;; would overflow 32 bits. Below 2**15 neither sum nor product of two can.
          (< (abs x) (** 2 15)) (str x)
          True f"INT64_C({x})"))

  (defn float-literal [self x]
    (if (and (= x 0.0) (= (str x) "0.0"))
      "ht_positive_zero()"  ; see ht_scalar.h
      (c-double x)))

  (defn scalar [self x scope]
    "An atom that must be a scalar: #(expr kind)."
    (setv [expr kind] (self.atom x scope))
    (when (not-in kind C-TYPES)
      (raise (IRError f"`{(print-ir x)}` is a {kind}, not a number")))
    #(expr kind))

  ;; ------------------------------------------------------------ right-hand sides

  (defn rhs [self node scope target]
    "Render the value of `(let TARGET NODE ...)`."
    (when (and (isinstance node list) node (not (isinstance (get node 0) Sym)))
      (raise (IRError f"malformed IR node {(excerpt node)}: a node starts with its name")))
    (match node
      "new" (self.new-cell target None)
      ["new" spec] (self.new-cell target spec)
      ["def" name params body] :if (isinstance params list) (self.def-node name params body target)
      ["call" f args] :if (and (isinstance args list) (self.is-function f scope)) (self.call-function f args scope target)
      ["set" cell value] (self.set-cell cell value scope)
      ["get" cell] (self.get-cell cell scope target node)
      ["tensor" dims] (self.tensor-node dims "float32" target)
      ["tensor" dims dtype] (self.tensor-node dims (str dtype) target)
      ["variable" x volatile] (self.variable-node x volatile scope target)
      ["dot" w x] (self.dot w x scope target node)
      [op a b] :if (and (in op #("+" "-" "*")) (or (self.is-tensor a scope) (self.is-tensor b scope)))
        (self.elementwise op a b scope target node)
      ["==" a b] :if (self.is-tensor a scope) (self.tensor-compare "==" a b scope target)
      [op a b] :if (in op ARITHMETIC) (self.arithmetic op a b scope node)
      [op a b] :if (and (in op #("==" "!=")) (self.is-string a scope)) (self.compare-strings op a b scope)
      [op a b] :if (in op COMPARISON) (self.compare op a b scope)
      [op a b] :if (in op BITWISE) (self.bitwise op a b scope node)
      ["~" a] (self.invert a scope node)
      ["raise" exception message] :if (and (isinstance exception str) (isinstance message str))
        (Out [(self.raise-statement exception message)] None "none")
      ["call" f args] :if (and (isinstance f Sym) (isinstance args list) (in f KERNEL-OPS))
        (self.table-op (get KERNEL-OPS f) args scope target node)
      ["call" x "view" dims] :if (isinstance dims list) (self.view x dims scope target node)
      ["call" x "backward" #* block] :if (<= (len block) 1)
        (self.backward-node x (when block (get block 0)) scope)
      ["call" x "backward_and_step" [o] #* block] :if (<= (len block) 1)
        (self.backward-node x (when block (get block 0)) scope o)
      ["call" o "zero_grad"] (self.zero-grad o scope)
      ["call" o "step"] (self.step o scope)
      ["call" o "step_remaining"] (self.step o scope :remaining True)
      ["call" f args] :if (and (isinstance f Sym) (in f GRADIENT-NODES) (isinstance args list))
        (self.fused-node f args scope target)
      ["array-get" x "data" index] (self.array-get x index scope)
      [name settings #* params] :if (optimizer-node? [name settings #* params])
        (self.optimizer-node name settings (when params (get params 0)) scope target)
      ["transform" "compose" parts] (self.compose parts scope)
      ["transform" kind #* args] (self.transform kind args)
      ["loader" spec] (self.loader-node spec scope target)
      ["len" x] :if (self.is-list x scope) (Out [] (get (. (.lookup scope x) info) "length") "int")
      ["len" x] (self.len-node x scope)
      ["nth" xs i] (self.nth-node xs i scope target node)
      ["bptt" key cells inputs block] :if (and self.in-backward (isinstance key int) (in key self.loops)
                                               (isinstance cells list) (isinstance inputs list))
        (self.bptt-node key cells inputs block scope)
      ["bptt" #* _rest]
        (raise (IRError (+ "a bptt node is (bptt K (CELLS) (INPUTS) (begin LETS)) inside a backward "
                           f"pass, K a loop taped before it: {(excerpt node)}")))
      ["for_dataloader" loader names body] (self.for-dataloader loader names body scope)
      ["for_dataloader_pipelined" loader names [dot w] body]
        (self.for-dataloader loader names body scope #(dot w))
      ["if" test then else] (self.if-node test then else scope target)
      ["while" cond body] (self.while-node cond body scope)
      ["while_taped" key cond body] :if (isinstance key int) (self.while-node cond body scope key)
      [(| "print" "printf") _] :if self.replaying   ; a loop run again for its backward pass
        (Out [] None "none")
      ["print" value] :if (and (isinstance value Sym) (self.is-string value scope))
        (self.print-string value scope)
      ["print" value] (self.print-node value scope)
      ["printf" [fmt #* args]] :if (and (isinstance fmt str) (not (isinstance fmt Sym))) (self.printf-node fmt args scope)
      [(Sym) #* _args] (raise (IRError f"unknown IR node `{(get node 0)}` in {(excerpt node)}"))
      _ (cond (isinstance node list) (raise (IRError f"malformed IR node {(excerpt node)}"))
              (self.names-a-non-value node scope)
                ;; another name for a cell, function, tensor, loader...: the same thing
                (do (setv b (.lookup scope node))
                    (Out [] b.cname b.type :declared True :info b.info))
              True (do (setv [expr kind] (self.atom node scope)) (Out [] expr kind)))))

  (defn names-a-non-value [self node scope]
    (and (isinstance node Sym) (not-in (. (.lookup scope node) type) #(#* C-VALUE-TYPES "none"))))

  ;; ------------------------------------------------------------ staged functions

  (defn declare-functions [self body scope]
    "Bind the program's staged functions (`(let F (def F (PARAMS) BODY) ...)` at its top level)
    before rendering anything, so they can call each other in any order. Their parameter and
    result kinds come from the calls and bodies of the previous pass (bool at first, the narrowest
    number kind, widened as calls and bodies show)."
    (setv self.functions (Scope)
          chain body)
    (while (and (isinstance chain list) chain (= (get chain 0) "begin") (= (len chain) 2))
      (setv chain (get chain 1)))
    (setv [lets _] (self.lets-of chain))
    (for [[name rhs] lets]
      (match rhs
        ["def" f params _] :if (isinstance params list)
          (do (setv key (str f)
                    [kinds result] (.get self.function-kinds key #([] "bool"))
                    kinds (if (= (len kinds) (len params)) kinds (lfor _ params "bool")))
              (setv (get self.function-kinds key) #(kinds result))
              (.bind self.functions name
                     (Binding (self.names.fresh f"fn_{f}") "function" :name key)))
        _ None)))

  (defn function-signature [self binding]
    (setv [kinds result] (get self.function-kinds (get binding.info "name")))
    #(kinds result))

  (defn is-function [self f scope]
    (and (isinstance f Sym)
         (try (= (. (.lookup scope f) type) "function") (except [IRError] False))))

  (defn def-node [self name params body target]
    "A staged function: a C function beside ht_body, called with the state and its arguments."
    (when (!= (str name) target)
      (raise (IRError f"a def must be bound to its own name: (let {name} (def {name} ...))")))
    (when self.nested
      (raise (IRError f"(def {name} ...) must be at the top level of the program")))
    (setv b (.lookup self.functions name)
          [kinds result] (self.function-signature b)
          scope (.child self.functions)
          c-params [])
    (for [[p kind] (zip params kinds)]
      (setv cname (self.names.fresh p))
      (.bind scope p (Binding cname kind))
      (.append c-params f"{(get C-TYPES kind)} {cname}"))
    (setv [lines expr kind] (self.block body scope))
    (when (not-in kind #(#* C-TYPES "none"))
      (raise (IRError f"staged function {name} returns a {kind}; it can return a number or None")))
    (when (!= kind result)
      (raise (self.disagree f"what staged function {name} returns ({result} or {kind})")))
    (setv out (if (= result "none") [] [f"{(get C-TYPES result)} *ht_result"])
          depth-check [f"if (++ht_s->call_depth > HT_MAX_CALL_DEPTH) return ht_too_deep({(c-string (str name))});"
                       (+ "if ((const char *)__builtin_frame_address(0) < ht_stack_floor()) "
                          f"return ht_stack_exhausted({(c-string (str name))});")
                       "if (ht_interrupted) return ht_interrupt_status();"])
    (setv signature (.join ", " ["ht_state *ht_s" #* c-params #* out]))
    (.extend self.function-lines
      [f"static int {b.cname}({signature}) {{"
       #* (indent depth-check)
       #* (indent lines)
       #* (if out [f"  *ht_result = {expr};"] [])
       "  ht_s->call_depth--;"
       "  return HT_OK;"
       "}"
       ""])
    (Out [] b.cname "function" :declared True :info b.info))

  (defn call-function [self f args scope target]
    (setv b (.lookup scope f)
          [kinds result] (self.function-signature b)
          values (lfor a args (self.scalar a scope)))
    (when (!= (len values) (len kinds))
      (raise (IRError f"{f} takes {(len kinds)} argument(s), given {(len values)}")))
    (setv seen (lfor [[_ k] old] (zip values kinds) (join-kinds old k)))
    (when (!= seen kinds)
      (raise (self.disagree f"the arguments of staged function {f} ({kinds} or {seen})")))
    (setv c-args (.join ", " ["ht_s" #* (lfor [e _] values e)]))
    (if (= result "none")
      (Out [f"{{ int ht_status = {b.cname}({c-args}); if (ht_status != HT_OK) return ht_status; }}"]
           None "none")
      (do (setv cname (self.names.fresh target))
          (Out [f"{(get C-TYPES result)} {cname};"
                f"{{ int ht_status = {b.cname}({c-args}, &{cname}); if (ht_status != HT_OK) return ht_status; }}"]
               cname result :declared True))))

  (defn new-cell [self target spec]
    ;; `(new KIND)`, typed by infer.hy (a bare `new` is a cell never set: an int): a C
    ;; number, or a tensor whose storage is taken where the cell is made (outside the loops
    ;; that set it, so it outlives their iterations).
    (setv kind (if (is spec None) "int" (read-cell-kind spec)))
    (if (isinstance kind TensorCellKind)
      (do (setv [lines storage] (self.alloc target kind.ttype))
          (Out lines storage "cell" :declared True
               :info {"requires-grad" kind.requires-grad "kind" kind}))
      (do (setv cname (self.names.fresh target))
          (Out [f"{(get C-TYPES kind)} {cname} = 0;"] cname "cell" :declared True
               :info {"kind" kind}))))

  (defn cell-kind [self b]
    "The kind of cell binding `b`."
    (get b.info "kind"))

  (defn cell-of [self cell scope]
    (setv b (.lookup scope cell))
    (when (!= b.type "cell")
      (raise (IRError f"`{cell}` is not a cell (bound by `new`)")))
    b)

  (defn set-cell [self cell value scope]
    (setv b (self.cell-of cell scope)
          tensor (self.is-tensor value scope)
          [expr kind] (if tensor
                        (do (setv v (.lookup scope value))
                            #(v.cname (TensorCellKind (self.ttype v) (self.requires v))))
                        (self.scalar value scope))
          old (self.cell-kind b)
          new (join-cell-kinds old kind))
    (when (!= old new)
      (raise (self.disagree f"what cell {cell} holds ({old} or {new})")))
    (if (and tensor (isinstance old TensorCellKind))
      (Out [f"memcpy({b.cname}, {expr}, {(self.tensor-bytes kind.ttype)});"] None "none")
      (Out [f"{b.cname} = {expr};"] None "none")))

  (defn is-list [self x scope]
    (and (isinstance x Sym) (= (. (.lookup scope x) type) "list")))

  (defn nth-node [self xs i scope target node]
    "`(nth XS I)`: element I of a list parameter, in place; Python's indexing (a negative I
    counts from the end, one out of range raises IndexError)."
    (when (not (self.is-list xs scope))
      (raise (IRError f"nth reads a list parameter, not `{(print-ir xs)}`: {(excerpt node)}")))
    (setv b (.lookup scope xs)
          t (get b.info "ttype")
          length (get b.info "length")
          [index kind] (self.scalar i scope)
          at (self.names.fresh "at")
          cname (self.names.fresh target))
    (when (= kind "float")
      (raise (IRError f"a list index is an int, not a float: {(excerpt node)}")))
    (self.tensor-out [f"int64_t {at} = {index};"
                      f"if ({at} < 0) {at} += {length};"
                      (+ f"if ({at} < 0 || {at} >= {length}) "
                         (self.raise-statement "IndexError" "list index out of range"))
                      f"{(get C-ELEMENT t.dtype)} *{cname} = {b.cname} + {at} * {t.numel};"]
                     cname t False))

  (defn tensor-bytes [self t]
    "C expression of the bytes of a tensor of type `t` (a batch's rows count at run time)."
    f"({(self.numel t)}) * {(get ELEMENT-BYTES t.dtype)}")

  (defn get-cell [self cell scope target node]
    "A number's cell is read as it is; a tensor's is copied, so that the value read stays
    the same when the cell is set again."
    (setv b (self.cell-of cell scope)
          kind (self.cell-kind b))
    (if (isinstance kind TensorCellKind)
      (do (setv [lines cname] (self.alloc target kind.ttype))
          (self.tensor-out [#* lines f"memcpy({cname}, {b.cname}, {(self.tensor-bytes kind.ttype)});"]
                           cname kind.ttype kind.requires-grad))
      (Out [] b.cname kind)))

  (defn arithmetic [self op a b scope node]
    "Python's arithmetic on numbers; the result's kind is kinds.hy's arithmetic-kind."
    (setv [x xk] (self.scalar a scope)
          [y yk] (self.scalar b scope)
          operands (join-kinds (if (= xk "bool") "int" xk) (if (= yk "bool") "int" yk))
          result (arithmetic-kind op xk yk)
          where (c-string (excerpt node))
          zero-check (if (and (real-number? b) (!= b 0))
                       []
                       [f"if ({y} == 0) return ht_zero_division({where});"]))
    (cond
      (in op #("+" "-" "*")) (Out [] f"({x} {op} {y})" result)
      (= op "/") (Out zero-check (if (= operands "int") f"ht_truediv_i64({x}, {y})"
                                     f"((double){x} / (double){y})") result)
      (= op "//") (Out zero-check (if (= operands "int") f"ht_floordiv_i64({x}, {y})"
                                      f"ht_floordiv_f64({x}, {y})") result)
      (= op "%") (Out zero-check (if (= operands "int") f"ht_mod_i64({x}, {y})"
                                     f"ht_mod_f64({x}, {y})") result)
      (= result "float")   ; **: C's pow, as Python's float ** is, with its OverflowError
        (Out (lfor [test exception message]
                   [["ht_pow_divides_by_zero" "ZeroDivisionError"
                     "0.0 cannot be raised to a negative power"]
                    ["ht_pow_is_complex" "ValueError"
                     (+ "a negative number to a fractional power is a complex number, which "
                        "compiled code does not have")]
                    ["ht_pow_overflows" "OverflowError" "(34, 'Numerical result out of range')"]]
                   (+ f"if ({test}({x}, {y})) " (self.raise-statement exception message)))
             f"pow({x}, {y})" result)
      True (raise (IRError f"`**` of two ints is not an IR node (staging multiplies it out): {(excerpt node)}"))))

  (defn compare [self op a b scope]
    "Python compares an int with a float exactly; C would round the int to a double."
    (setv [x xk] (self.scalar a scope)
          [y yk] (self.scalar b scope))
    (Out [] (cond (= #(xk yk) #("float" "float")) f"({x} {op} {y})"
                  (= yk "float") f"(ht_cmp_i64_f64({x}, {y}) {op} 0)"
                  (= xk "float") f"(0 {op} ht_cmp_i64_f64({y}, {x}))"
                  True f"({x} {op} {y})")
         "bool"))

  (defn is-string [self x scope]
    "Whether atom `x` is a string value (a string constant, staged or not)."
    (= (get (self.atom x scope) 1) "str"))

  (defn compare-strings [self op a b scope]
    (setv [[x xk] [y yk]] [(self.atom a scope) (self.atom b scope)])
    (when (!= xk yk)
      (raise (IRError f"`{op}` of a string and a {yk}: {(print-ir [op a b])}")))
    (Out [] f"(strcmp({x}, {y}) {op} 0)" "bool"))

  (defn print-string [self x scope]
    "`(print X)` of a string value."
    (setv [expr _] (self.atom x scope))
    (Out [f"ht_print_text({expr}, strlen({expr}));" "ht_print_end();"] None "none"))

  (defn integer [self x scope node]
    "An atom that must be an int or a bool, for a bitwise operator: #(expr kind)."
    (setv [expr kind] (self.scalar x scope))
    (when (= kind "float")
      (raise (IRError f"`{(get node 0)}` needs ints or bools: {(excerpt node)}")))
    #(expr kind))

  (defn bitwise [self op a b scope node]
    "Python's `& | ^ << >>` of ints and bools (bool & bool is a bool, a shift an int). A
    negative shift count is Python's ValueError; see ht_scalar.h for the shifts' meaning."
    (setv [x xk] (self.integer a scope node)
          [y yk] (self.integer b scope node))
    (if (in op SHIFTS)
      (Out (if (and (isinstance b int) (>= b 0))
             []
             [f"if ({y} < 0) {(self.raise-statement "ValueError" "negative shift count")}"])
           f"{(get SHIFTS op)}({x}, {y})" "int")
      (Out [] f"({x} {op} {y})" (bitwise-kind op xk yk))))

  (defn invert [self a scope node]
    "`(~ X)`: Python's ~ of an int or a bool, -X - 1."
    (setv [x _] (self.integer a scope node))
    (Out [] f"(~(int64_t){x})" "int"))

  (defn nested-block [self node scope]
    "A block inside a construct."
    (+= self.nested 1)
    (try
      (self.block node scope)
      (finally (-= self.nested 1))))

  (defn if-node [self test then else scope target]
    (setv [test-expr _] (self.scalar test scope)
          [then-lines then-expr then-kind] (self.nested-block then scope)
          [else-lines else-expr else-kind] (self.nested-block else scope))
    (if (or (= then-kind "none") (= else-kind "none"))
      (Out [f"if ({test-expr}) {{" #* (indent then-lines) "} else {"
            #* (indent else-lines) "}"]
           None "none")
      (do (setv kind (join-kinds then-kind else-kind)
                cname (self.names.fresh target))
          (when (not-in kind C-VALUE-TYPES)
            (raise (IRError (+ f"an if's value is a number or a string, not a {kind}: give "
                               "both branches a variable (new) to set instead"))))
          (Out [f"{(get C-VALUE-TYPES kind)} {cname};"
                f"if ({test-expr}) {{" #* (indent then-lines) f"  {cname} = {then-expr};"
                "} else {" #* (indent else-lines) f"  {cname} = {else-expr};" "}"]
               cname kind :declared True))))

  (defn while-node [self cond body scope [key None]]
    "`(while COND BODY)`, or `(while_taped K COND BODY)` (c_bptt.hy)."
    (setv mark (self.names.fresh "arena_mark")
          [cond-lines cond-expr cond-kind] (self.nested-block cond scope)
          loop (when (is-not key None) (self.taped-loop key body scope))
          [body-lines _ _] (self.nested-block body scope))
    (when (not-in cond-kind C-TYPES)
      (raise (IRError f"a while's test is a {cond-kind}, not a number: {(excerpt cond)}")))
    (Out [#* (if loop [f"{loop.tape}.used = 0;"] [])
          "for (;;) {"
          "  if (ht_interrupted) return ht_interrupt_status();"
          f"  size_t {mark} = ht_s->arena.top;"
          #* (indent cond-lines)
          f"  if (!({cond-expr})) break;"
          #* (if loop (indent (self.loop-save-lines loop)) [])
          #* (indent body-lines)
          f"  ht_s->arena.top = {mark};"
          "}"]
         None "none"))

  (defn print-node [self value scope]
    "`(print \"text\")` or `(print V)`: a value prints as `{}` formats it."
    (if (and (isinstance value str) (not (isinstance value Sym)))
      (Out [(self.text-line value) "ht_print_end();"] None "none")
      (self.printf-node "{}" [value] scope)))

  (defn text-line [self text]
    (try
      (c-print-text text)
      (except [e ValueError]
        (raise (IRError f"print: {e}")))))

  (defn printf-node [self fmt args scope]
    "Each piece of the format prints as Python's str.format makes it (backend/printf.hy)."
    (setv values (lfor a args (self.scalar a scope))
          kinds (lfor [_ k] values k))
    (try
      (setv pieces (format-pieces fmt kinds))
      (except [e ValueError]
        (raise (IRError f"printf format {fmt !r}: {e}"))))
    (defn arg [i] (get (get values i) 0))
    (setv lines
          (lfor piece pieces
                (match piece
                  ["text" text] (self.text-line text)
                  ["int" i spec] f"ht_print_int({(arg i)}, {(c-spec spec)});"
                  ["float" i spec] f"ht_print_float({(arg i)}, {(c-spec spec)});"
                  ["bool" i] f"ht_print_bool({(arg i)});")))
    (Out [#* lines "ht_print_end();"] None "none")))


(setv _RENDER-RECURSION-LIMIT 4000)  ; nested blocks recurse (~5 frames a level): ~750 levels


(defn render-c [program arg-kinds [loader-dims None]]
  "C for an IR program (its `def` node) whose parameters have `arg-kinds`, after its passes:
  the fusions (fusion.hy), type inference (infer.hy), then reverse-mode differentiation
  (autodiff.hy); its \"rendered_ir\" is the program they give the renderer, every backward
  pass written out in it."
  (setv limit (hy.I.sys.getrecursionlimit))
  (hy.I.sys.setrecursionlimit (max limit _RENDER-RECURSION-LIMIT))
  (try
    (setv typing (differentiate (infer (fuse program) arg-kinds loader-dims) arg-kinds loader-dims)
          rendered (.render (CRenderer typing arg-kinds loader-dims)))
    (setv (get rendered "rendered_ir") (print-ir typing.program))
    rendered
    (except [RecursionError]
      (raise (IRError "the IR is nested too deeply to render (over Python's recursion limit)")
             :from None))
    (except [e ShapeError]   ; (a shape rule's, for IR that staging did not check)
      (raise (IRError (str e)) :from None))
    (finally
      (hy.I.sys.setrecursionlimit limit))))
