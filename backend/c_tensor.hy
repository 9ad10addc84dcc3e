"Rendering the IR's tensor nodes to C: storage, kernel calls, data loaders, the backward pass
and the optimizer. A mixin of CRenderer (c_render.hy), whose `rhs` dispatches to these.

Storage: tensors bound at the top level (parameters, constants) live in the program's state;
every other tensor is carved from an arena that is reset after each loop iteration, so a
training loop allocates nothing. Sizes are fixed when the program is staged; a tensor read from
a data loader has its first dimension set by the rows of the current batch (`batched`)."

(import math
        hytorch.backend.c_out [Out excerpt indent]
        hytorch.backend.ir [Sym print-ir]
        hytorch.backend.scope [Binding]
        hytorch.backend.shapes :as shapes
        hytorch.backend.shapes [TensorType ShapeError]
        hytorch.backend.grad [Record backward-lets]
        hytorch.errors [IRError])

(setv C-ELEMENT {"float32" "float" "int64" "int64_t"})
(setv ELEMENT-BYTES {"float32" 4 "int64" 8})
(setv INIT-SEED "0x48795465ull")   ; seed of the uniform init of tensors with no bound value


(defn _float-c [x]
  (setv r (repr (float x)))
  (+ r "f"))


(defclass Param []
  "A trainable variable's storage: C expressions of its values, gradient, has-gradient and
  first-step flags and (with a momentum optimizer) momentum buffer."
  (defn __init__ [self name tensor data grad has first numel ttype]
    (setv self.name name self.tensor tensor self.data data self.grad grad self.has has
          self.first first self.numel numel self.ttype ttype self.mom None)))


(defclass TensorRendering []
  "Tensor nodes. Expects from CRenderer: self.names, self.nested, self.tape and the state
  collections (fields, init, free, slots, arena-bytes)."

  ;; ------------------------------------------------------------ helpers

  (defn reset-tensor-state [self]
    (setv self.fields [] self.init-lines [] self.free-lines [] self.slots []
          self.arena-bytes 0 self.tape [] self.trainables [] self.grad-counter 0
          self.fusion-plan {} self.fused-vars {} self.backward-ir [] self.pipeline None))

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
    (+= self.arena-bytes (* 64 (math.ceil (/ bytes 64))))
    #([f"{(get C-ELEMENT t.dtype)} *{cname} = ht_arena_alloc(&ht_s->arena, {bytes});"] cname))

  (defn state-field [self name decl-type [comment None]]
    "A new field of the program state: #(C expression of it, field name)."
    (setv field (self.names.fresh name))
    (.append self.fields (+ f"{decl-type} {field};" (if comment f" /* {comment} */" "")))
    #(f"ht_s->{field}" field))

  (defn slot [self expr role #** info]
    "Expose a state buffer to Python (ht_slot) with what it holds."
    (.append self.slots {"expr" expr "role" role #** info})
    (- (len self.slots) 1))

  (defn tensor-out [self lines cname t requires-grad #** info]
    (Out lines cname "tensor" :declared True
         :info {"ttype" t "requires-grad" requires-grad #** info}))

  (defn record [self node target inputs scope [row-vectors #{}] [input-shape None]]
    "Put a forward op on the tape (bound later, see `chain`)."
    (setv self.pending (Record node (Sym target) (list inputs) None row-vectors input-shape)))

  (defn requires [self #* bindings]
    (any (gfor b bindings (.get b.info "requires-grad" False))))

  ;; ------------------------------------------------------------ storage nodes

  (defn tensor-node [self dims dtype target]
    (when self.nested
      (raise (IRError "a (tensor ...) node must be at the top level of the program")))
    (setv t (TensorType (list dims) dtype)
          [expr field] (self.state-field target f"{(get C-ELEMENT dtype)} *" f"(tensor {dims})")
          bytes (* (max t.numel 1) (get ELEMENT-BYTES dtype)))
    (.append self.init-lines f"if (!({expr} = ht_alloc({bytes}))) goto fail;")
    (when (= dtype "float32")
      (.append self.init-lines f"ht_rng_fill_uniform(&rng, {expr}, {t.numel}, -0.5f, 0.5f);"))
    (.append self.free-lines f"ht_free({expr});")
    (self.slot expr "tensor" :sym target :numel t.numel :dtype dtype :shape (list t.shape))
    (Out [] expr "tensor" :declared True :info {"ttype" t "requires-grad" False}))

  (defn variable-node [self x volatile scope target]
    (setv b (self.tensor x scope "variable")
          t (self.ttype b))
    (if (or volatile self.nested (!= t.dtype "float32") (is-not (.get b.info "param") None))
      (Out [] b.cname "tensor" :declared True
           :info {"ttype" t "requires-grad" (.get b.info "requires-grad" False)
                  "param" (.get b.info "param")})
      (do (setv numel t.numel
                [grad _] (self.state-field f"{target}_grad" "float *" f"gradient of {target}")
                [has _] (self.state-field f"{target}_has_grad" "int64_t")
                [first _] (self.state-field f"{target}_first_step" "int64_t")
                param (Param target (str x) b.cname grad has first numel t))
          (.append self.init-lines f"if (!({grad} = ht_alloc({(* 4 numel)}))) goto fail;")
          (.append self.init-lines f"{first} = 1;")
          (.append self.free-lines f"ht_free({grad});")
          (.append self.trainables param)
          (self.slot f"&{first}" "first_step" :sym target :tensor (str x))
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
          t (self.shape-checked shapes.dot-type (self.ttype wb) (self.ttype xb))
          [out in] (. (self.ttype wb) shape)
          [rows _] (self.rows-cols (self.ttype xb))
          pipelined (and self.pipeline (= (get self.pipeline "dot") target)))
    (setv [lines y] (if pipelined
                      #([] (get self.pipeline "out-cur"))
                      (self.alloc target t))
          call f"ht_linear_fwd({y}, {xb.cname}, {wb.cname}, NULL, {rows}, {in}, {out});")
    (self.record node target [w x] scope)
    (self.tensor-out [#* lines (if pipelined
                                 (.format "if (!{}) {}" (get self.pipeline "ready") call)
                                 call)]
                     y t (self.requires wb xb)))

  (defn elementwise [self op a b scope target node]
    (setv ab (self.tensor a scope op) bb (self.tensor b scope op)
          ta (self.ttype ab) tb (self.ttype bb)
          t (self.shape-checked shapes.elementwise-type ta tb "combine")
          [lines y] (self.alloc target t)
          kernel (get {"+" "ht_add" "-" "ht_sub" "*" "ht_mul"} op))
    (when (or (!= ta.dtype "float32") (!= tb.dtype "float32"))
      (raise (IRError f"`{op}` of tensors needs float32 tensors")))
    (setv row-vectors #{})
    (cond
      (= ta.shape tb.shape)
        (.append lines f"{kernel}({y}, {ab.cname}, {bb.cname}, {(self.numel t)});")
      (and (= op "+") (= tb.ndim 1))
        (do (setv [rows cols] (self.rows-cols t))
            (.add row-vectors (str b))
            (.append lines f"ht_add_rowvec({y}, {ab.cname}, {bb.cname}, {rows}, {cols});"))
      (and (= op "+") (= ta.ndim 1))
        (do (setv [rows cols] (self.rows-cols t))
            (.add row-vectors (str a))
            (.append lines f"ht_add_rowvec({y}, {bb.cname}, {ab.cname}, {rows}, {cols});"))
      True (raise (IRError f"`{op}` of tensors {(shapes.show ta)} and {(shapes.show tb)} is not supported (equal shapes, or + of a row vector)")))
    (self.record node target [a b] scope row-vectors)
    (self.tensor-out lines y t (self.requires ab bb)))

  (defn unary [self f x scope target node]
    (setv b (self.tensor x scope f)
          t (self.shape-checked shapes.unary-type (self.ttype b) f)
          [lines y] (self.alloc target t))
    (self.record node target [x] scope)
    (self.tensor-out [#* lines f"ht_{f}_fwd({y}, {b.cname}, {(self.numel t)});"] y t (self.requires b)))

  (defn softmax-like [self f x dim scope target node]
    (setv b (self.tensor x scope f)
          t (self.shape-checked shapes.last-dim-type (self.ttype b) dim f)
          [rows cols] (self.rows-cols t)
          [lines y] (self.alloc target t))
    (self.record node target [x] scope)
    (self.tensor-out [#* lines f"ht_{f}_fwd({y}, {b.cname}, {rows}, {cols});"] y t (self.requires b)))

  (defn nll-loss [self p tg mean scope target node]
    (setv pb (self.tensor p scope "nll_loss") tb (self.tensor tg scope "nll_loss")
          t (self.shape-checked shapes.nll-loss-type (self.ttype pb) (self.ttype tb))
          [rows cols] (self.rows-cols (self.ttype pb))
          [lines y] (self.alloc target t))
    (self.record node target [p tg] scope)
    (self.tensor-out
      [#* lines f"if (ht_nll_loss_fwd({y}, {pb.cname}, {tb.cname}, {rows}, {cols}, {(int (bool mean))}) != HT_OK) return HT_ERROR;"]
      y t (self.requires pb)))

  (defn mse-loss [self x tg scope target node]
    (setv xb (self.tensor x scope "mse_loss") tb (self.tensor tg scope "mse_loss")
          t (self.shape-checked shapes.mse-loss-type (self.ttype xb) (self.ttype tb))
          [lines y] (self.alloc target t))
    (self.record node target [x tg] scope)
    (self.tensor-out [#* lines f"ht_mse_loss_fwd({y}, {xb.cname}, {tb.cname}, {(self.numel (self.ttype xb))});"]
                     y t (self.requires xb tb)))

  (defn reduce-all [self f x scope target node]
    (setv b (self.tensor x scope f)
          t (self.shape-checked shapes.reduce-type (self.ttype b) f)
          [lines y] (self.alloc target t)
          kernel (if (= (. (self.ttype b) dtype) "int64") f"ht_{f}_all_i64" f"ht_{f}_all"))
    (self.record node target [x] scope)
    (self.tensor-out [#* lines f"{kernel}({y}, {b.cname}, {(self.numel (self.ttype b))});"]
                     y t (self.requires b)))

  (defn scale [self x s scope target node]
    (setv b (self.tensor x scope "scale")
          t (self.ttype b)
          [lines y] (self.alloc target t))
    (self.record node target [x] scope)
    (self.tensor-out [#* lines f"ht_scale({y}, {b.cname}, {(_float-c s)}, {(self.numel t)});"]
                     y t (self.requires b)))

  (defn argmax [self x dim scope target]
    (setv b (self.tensor x scope "argmax")
          t (self.shape-checked shapes.argmax-type (self.ttype b) dim)
          [rows cols] (self.rows-cols (self.ttype b))
          [lines y] (self.alloc target t))
    (self.tensor-out [#* lines f"ht_argmax_rows({y}, {b.cname}, {rows}, {cols});"] y t False))

  (defn tensor-compare [self op a b scope target]
    (setv ab (self.tensor a scope op) bb (self.tensor b scope op)
          t (self.shape-checked shapes.compare-type (self.ttype ab) (self.ttype bb)))
    (when (or (!= op "==") (!= (. (self.ttype ab) shape) (. (self.ttype bb) shape))
              (!= (. (self.ttype ab) dtype) "int64") (!= (. (self.ttype bb) dtype) "int64"))
      (raise (IRError "comparing tensors is supported as == of int64 tensors of one shape")))
    (setv [lines y] (self.alloc target t))
    (self.tensor-out [#* lines f"ht_eq_i64({y}, {ab.cname}, {bb.cname}, {(self.numel t)});"] y t False))

  (defn view [self x dims scope target node]
    (setv b (self.tensor x scope "view")
          t (self.shape-checked shapes.view-type (self.ttype b) dims))
    (self.record node target [x] scope :input-shape (. (self.ttype b) shape))
    (self.tensor-out [] b.cname t (self.requires b)))

  ;; ------------------------------------------------------------ data

  (defn transform [self kind args]
    (match [kind #* args]
      ["toTensor"] (Out [] "0" "transform" :declared True :info {"mean" 0.0 "std" 1.0})
      ["normalize" [mean std]]
        (Out [] "0" "transform" :declared True :info {"mean" (float mean) "std" (float std)})
      _ (raise (IRError f"unknown transform {kind} {(print-ir (list args))}"))))

  (defn compose [self parts scope]
    (setv mean 0.0 std 1.0)
    (for [p parts]
      (setv b (.lookup scope p))
      (when (!= b.type "transform")
        (raise (IRError f"compose takes transforms, `{p}` is a {b.type}")))
      (when (!= (get b.info "std") 1.0)
        (setv mean (get b.info "mean") std (get b.info "std"))))
    (Out [] "0" "transform" :declared True :info {"mean" mean "std" std}))

  (defn loader-node [self spec scope target]
    (match spec
      ["MNIST" train download transform #* rest]
        (do (setv tb (.lookup scope transform)
                  [batch shuffle] (+ (list rest) (cut [1 False] (len rest) None))
                  [rows cols] (.get self.loader-dims (str target) #(28 28))
                  [expr field] (self.state-field target "ht_loader" "(loader (MNIST ...))"))
            (when (!= tb.type "transform")
              (raise (IRError f"the loader's transform `{transform}` is a {tb.type}")))
            (.append self.free-lines f"ht_loader_release(&{expr});")
            (self.slot f"&{expr}" "loader" :sym target :train (bool train) :batch_size batch
                       :shuffle (bool shuffle) :mean (get tb.info "mean") :std (get tb.info "std")
                       :rows rows :cols cols)
            (Out [] expr "loader" :declared True
                 :info {"batch" batch "rows" rows "cols" cols}))
      _ (raise (IRError f"unknown data set in (loader {(excerpt spec)})"))))

  (defn loader-of [self x scope]
    (setv b (.lookup scope x))
    (when (!= b.type "loader")
      (raise (IRError f"`{x}` is a {b.type}, not a loader")))
    b)

  (defn len-node [self x scope]
    (Out [] f"ht_loader_len(&{(. (self.loader-of x scope) cname)})" "int"))

  (defn for-dataloader [self loader names body scope]
    (when (!= (len names) 3)
      (raise (IRError "for_dataloader binds (INDEX DATA TARGET)")))
    (setv lb (self.loader-of loader scope)
          [index data target] names
          batch (get lb.info "batch") rows (get lb.info "rows") cols (get lb.info "cols")
          i (self.names.fresh index)
          n (self.names.fresh f"{index}_batches")
          rows-var (self.names.fresh f"{index}_rows")
          mark (self.names.fresh f"{index}_arena")
          plan (self.pipeline-plan body data scope)
          buffers (if plan #("a" "b") #("a"))
          xs (lfor b buffers (get (self.state-field f"{data}_batch_{b}" "float *" "a batch of inputs") 0))
          ys (lfor b buffers (get (self.state-field f"{target}_batch_{b}" "int64_t *" "a batch of labels") 0))
          [x-cur y-cur] (if plan
                          [(self.names.fresh f"{data}_current") (self.names.fresh f"{target}_current")]
                          [(get xs 0) (get ys 0)])
          inner (.child scope))
    (for [x xs] (self.state-buffer x (* 4 batch rows cols)))
    (for [y ys] (self.state-buffer y (* 8 batch)))
    (.bind inner index (Binding i "int"))
    (.bind inner data (Binding x-cur "tensor" :ttype (TensorType [batch 1 rows cols] "float32" rows-var)
                               :requires-grad False))
    (.bind inner target (Binding y-cur "tensor" :ttype (TensorType [batch] "int64" rows-var)
                                 :requires-grad False))
    (when plan
      (setv dot (get plan "dot")
            outs (lfor b buffers (get (self.state-field f"{dot}_{b}" "float *"
                                                         "a batch's first-layer outputs") 0)))
      (for [o outs] (self.state-buffer o (* 4 batch (get plan "out"))))
      (.update plan {"index" i "count" n "loader" lb.cname "rows" rows-var
                     "rows-next" (self.names.fresh f"{index}_rows_next")
                     "ready" (self.names.fresh f"{index}_outputs_ready")
                     "prefetched" (self.names.fresh f"{index}_prefetched")
                     "out-cur" (self.names.fresh f"{dot}_current")
                     "out-next" (self.names.fresh f"{dot}_next")
                     "x-next" (self.names.fresh f"{data}_next")
                     "y-next" (self.names.fresh f"{target}_next")}))
    (setv self.pipeline plan)
    (+= self.nested 1)
    (setv [body-lines _ _] (self.block body inner))
    (-= self.nested 1)
    (setv self.pipeline None)
    (setv head [f"if (!{lb.cname}.order) return ht_unbound(\"loader {loader}\");"
                f"ht_loader_begin_epoch(&{lb.cname});"])
    (if (not plan)
      (Out [#* head
            f"for (int64_t {i} = 0, {n} = ht_loader_len(&{lb.cname}); {i} < {n}; {i}++) {{"
            "  if (ht_interrupted) return ht_interrupt_status();"
            f"  int64_t {rows-var} = ht_loader_fill(&{lb.cname}, {i}, {x-cur}, {y-cur});"
            f"  size_t {mark} = ht_s->arena.top;"
            #* (indent body-lines)
            f"  ht_s->arena.top = {mark};"
            "}"]
           None "none")
      (self.pipelined-loop head plan xs ys outs x-cur y-cur mark body-lines)))

  (defn state-buffer [self expr bytes]
    (.append self.init-lines f"if (!({expr} = ht_alloc({bytes}))) goto fail;")
    (.append self.free-lines f"ht_free({expr});"))

  (defn pipelined-loop [self head plan xs ys outs x-cur y-cur mark body-lines]
    "The loop when the first layer's SGD step is fused with the next batch's forward: the
    next batch is read during the backward pass and its first-layer outputs computed with
    the updated weights, in the same pass over them (double buffers swap at the end)."
    (setv [i n loader rows rows-next ready prefetched out-cur out-next x-next y-next]
          (lfor k ["index" "count" "loader" "rows" "rows-next" "ready" "prefetched" "out-cur"
                   "out-next" "x-next" "y-next"]
                (get plan k))
          [xa xb] xs [ya yb] ys [oa ob] outs)
    (Out [#* head
          f"float *{x-cur} = {xa}, *{x-next} = {xb};"
          f"int64_t *{y-cur} = {ya}, *{y-next} = {yb};"
          f"float *{out-cur} = {oa}, *{out-next} = {ob};"
          f"int64_t {rows} = 0, {rows-next} = 0;"
          f"int {ready} = 0, {prefetched} = 0;"
          f"for (int64_t {i} = 0, {n} = ht_loader_len(&{loader}); {i} < {n}; {i}++) {{"
          "  if (ht_interrupted) return ht_interrupt_status();"
          f"  if (!{ready}) {rows} = ht_loader_fill(&{loader}, {i}, {x-cur}, {y-cur});"
          f"  size_t {mark} = ht_s->arena.top;"
          #* (indent body-lines)
          f"  {ready} = {prefetched};"
          f"  if ({prefetched}) {{"
          f"    float *swap_x = {x-cur}; {x-cur} = {x-next}; {x-next} = swap_x;"
          f"    int64_t *swap_y = {y-cur}; {y-cur} = {y-next}; {y-next} = swap_y;"
          f"    float *swap_o = {out-cur}; {out-cur} = {out-next}; {out-next} = swap_o;"
          f"    {rows} = {rows-next};"
          f"    {prefetched} = 0;"
          "  }"
          f"  ht_s->arena.top = {mark};"
          "}"]
         None "none"))

  (defn pipeline-plan [self body data scope]
    "Whether a loop body's first layer can be pipelined (see pipelined-loop): the body's first
    `(dot W X)` on the loop's data (or a view of it), with W a trainable variable that nothing
    else in the body mentions and whose optimizer step the backward pass applies."
    (match body
      ["begin" chain] None
      _ (return None))
    (setv [lets _] (self.lets-of (get body 1))
          aliases #{(str data)})
    (for [[name rhs] lets]
      (match rhs
        ["variable" x _] :if (in (str x) aliases) (.add aliases (str name))
        ["call" x "view" _] :if (in (str x) aliases) (.add aliases (str name))
        ["dot" w x] :if (in (str x) aliases)
          (return (self.pipeline-weight lets name w scope))
        _ None))
    None)

  (defn pipeline-weight [self lets dot w scope]
    (setv b (try (.lookup scope w) (except [IRError] (return None)))
          param (.get b.info "param"))
    (when (or (is param None) (& #{(str w)} (self.names-in (lfor [n r] lets :if (!= n dot) r))))
      (return None))
    (self.plan-fusion lets scope)
    (for [[_ rhs] lets]
      (setv optimizer (.get self.fusion-plan (id rhs)))
      (when (and optimizer (in param (get (. (.lookup scope (Sym optimizer)) info) "params")))
        (return {"weight" (str w) "dot" (str dot) "out" (get param.ttype.shape 0)})))
    None)

  ;; ------------------------------------------------------------ optimizer

  (defn sgd-node [self settings params scope target]
    (setv [lr momentum dampening weight-decay nesterov]
          (+ (list settings) (cut [0.0 0.0 0.0 False] (- (len settings) 1) None)))
    (setv params
          (if (is params None)
            (list self.trainables)
            (lfor p params
                  (do (setv b (.lookup scope p) info (.get b.info "param"))
                      (when (is info None)
                        (raise (IRError f"SGD parameter `{p}` is not a trainable variable")))
                      info))))
    (when momentum
      (for [p params]
        (when (is-not p.mom None)
          (raise (IRError f"`{p.name}` is optimized by two optimizers with momentum")))
        (setv [mom _] (self.state-field f"{p.name}_momentum" "float *"))
        (.append self.init-lines f"if (!({mom} = ht_alloc({(* 4 p.numel)}))) goto fail;")
        (.append self.free-lines f"ht_free({mom});")
        (setv p.mom mom)
        (self.slot mom "momentum" :sym p.name :tensor p.tensor :numel p.numel)))
    (Out [] "0" "optimizer" :declared True
         :info {"params" params
                "hyper" (.join ", " [(_float-c lr) (_float-c momentum) (_float-c dampening)
                                      (_float-c weight-decay) (str (int (bool nesterov)))])
                "settings" [lr momentum dampening weight-decay nesterov]
                "name" target}))

  (defn optimizer-of [self x scope]
    (setv b (.lookup scope x))
    (when (!= b.type "optimizer")
      (raise (IRError f"`{x}` is a {b.type}, not an optimizer")))
    b)

  (defn zero-grad [self o scope]
    (Out (lfor p (get (. (self.optimizer-of o scope) info) "params") f"{p.has} = 0;")
         None "none"))

  (defn step [self o scope]
    (setv b (self.optimizer-of o scope)
          hyper (get b.info "hyper")
          fused (.get self.fused-vars (str o) #{})
          lines [])
    (for [p (get b.info "params")]
      (when (not-in p.name fused)
        (.extend lines
          [f"if ({p.has}) {{"
           f"  ht_sgd_step({p.data}, {p.grad}, {(or p.mom "NULL")}, {p.numel}, {hyper}, (int){p.first});"
           f"  {p.first} = 0;"
           "}"])))
    (Out lines None "none"))

  (defn plan-fusion [self lets scope]
    "Find, in one block's lets, optimizers whose zero_grad, single backward and step allow the
    step to be applied during the backward pass: no other zero_grad, step or backward between
    them, and the parameters are not read between the backward and the step."
    (setv calls [])
    (for [[i [name rhs]] (enumerate lets)]
      (match rhs
        ["call" o "zero_grad"] (.append calls #(i "zero" (str o) rhs))
        ["call" o "step"] (.append calls #(i "step" (str o) rhs))
        ["call" l "backward"] (.append calls #(i "backward" (str l) rhs))
        _ None))
    (for [[k [i kind o _]] (enumerate calls)]
      (when (= kind "zero")
        (setv later (cut calls (+ k 1) None))
        (when (and (>= (len later) 2) (= (get (get later 0) 1) "backward")
                   (= (cut (get later 1) 1 3) #("step" o)))
          (setv b (.lookup scope (Sym o)))
          (when (= b.type "optimizer")
            (setv backward-at (get (get later 0) 0)
                  step-at (get (get later 1) 0)
                  params (sfor p (get b.info "params") p.name)
                  between (lfor [_ rhs] (cut lets (+ backward-at 1) step-at) rhs))
            (when (not (& params (self.names-in between)))
              (setv (get self.fusion-plan (id (get (get later 0) 3))) o)))))))

  (defn names-in [self nodes]
    (setv out #{})
    (defn walk [x]
      (cond (isinstance x Sym) (.add out (str x))
            (isinstance x list) (for [y x] (walk y))))
    (walk nodes)
    out)

  ;; ------------------------------------------------------------ backward

  (defn backward-node [self loss scope node]
    (setv lb (self.tensor loss scope "backward")
          t (self.ttype lb))
    (when (or (!= t.shape #()) (!= t.dtype "float32"))
      (raise (IRError f"backward needs a scalar float32 loss, `{loss}` is {(shapes.show t)}")))
    (when (not (.get lb.info "requires-grad"))
      (raise (IRError f"`{loss}` does not depend on any trainable variable")))
    (setv optimizer (.get self.fusion-plan (id node))
          fused (if optimizer
                  (dfor p (get (. (.lookup scope (Sym optimizer)) info) "params") p.name (Sym optimizer))
                  {}))
    (defn lookup [name]
      (try (.lookup scope name) (except [IRError] None)))
    (defn fresh []
      (setv self.grad-counter (+ self.grad-counter 1))
      (Sym f"g{(- self.grad-counter 1)}"))
    (setv [lets done]
          (backward-lets self.tape loss fresh
                         (fn [name binding] (is (lookup name) binding))
                         (fn [name] (.get (. (or (lookup name) (Binding "" "none")) info) "requires-grad" False))
                         (fn [name] (is-not (.get (. (or (lookup name) (Binding "" "none")) info) "param") None))
                         fused))
    (when optimizer
      (setv (get self.fused-vars optimizer) done))
    (.append self.backward-ir (lfor [sym rhs] lets (print-ir [(Sym "let") sym rhs (Sym "...")])))
    (setv lines [f"/* backward of {loss} */"])
    (for [[sym rhs] lets]
      (setv out (self.rhs rhs scope (str sym)))
      (self.bind-out scope sym out)
      (.extend lines out.lines))
    (Out lines lb.cname "tensor" :declared True :info lb.info))

  (defn step-and-next-forward [self p hyper gy x rows in out step c]
    "The pipelined first layer's step: read the next batch and compute its outputs with the
    updated weights in the same pass (see pipelined-loop)."
    (setv [i n loader rows-next x-next y-next out-next prefetched]
          (lfor k ["index" "count" "loader" "rows-next" "x-next" "y-next" "out-next" "prefetched"]
                (get self.pipeline k))
          mom (or p.mom "NULL"))
    [f"if ({i} + 1 < {n}) {{"
     f"  {rows-next} = ht_loader_fill(&{loader}, {i} + 1, {x-next}, {y-next});"
     f"  ht_linear_bwd_weight_sgd_fwd({p.data}, {mom}, {(c gy)}, {(c x)}, {rows}, {in}, {out}, {hyper}, (int){p.first}, {out-next}, {x-next}, {rows-next});"
     f"  {prefetched} = 1;"
     "} else {"
     f"  {step}"
     "}"])

  (defn param-of [self v scope]
    (setv info (.get (. (.lookup scope v) info) "param"))
    (when (is info None)
      (raise (IRError f"`{v}` is not a trainable variable")))
    info)

  (defn grad-node [self f args scope target]
    "The nodes the backward pass is made of (see grad.hy)."
    (defn t-of [x] (self.ttype (self.tensor x scope f)))
    (defn c [x] (. (self.tensor x scope f) cname))
    (defn new [t] (self.alloc target t))
    (match [f #* args]
      ["ones_like" l]
        (do (setv [lines y] (new (t-of l)))
            (self.tensor-out [#* lines f"{y}[0] = 1.0f;"] y (t-of l) False))
      [(| "relu_grad" "sigmoid_grad" "tanh_grad") gy y]
        (do (setv t (t-of y) [lines dx] (new t) kernel (+ "ht_" (cut f 0 -5) "_bwd"))
            (self.tensor-out [#* lines f"{kernel}({dx}, {(c gy)}, {(c y)}, {(self.numel t)}, 0);"] dx t False))
      [(| "log_softmax_grad" "softmax_grad") gy y]
        (do (setv t (t-of y) [rows cols] (self.rows-cols t) [lines dx] (new t)
                  kernel (+ "ht_" (cut f 0 -5) "_bwd"))
            (self.tensor-out [#* lines f"{kernel}({dx}, {(c gy)}, {(c y)}, {rows}, {cols}, 0);"] dx t False))
      ["dot_grad_input" gy w]
        (do (setv tg (t-of gy) [out in] (. (t-of w) shape)
                  t (TensorType [#* (cut tg.shape 0 -1) in] "float32" tg.batched)
                  [rows _] (self.rows-cols tg) [lines dx] (new t))
            (self.tensor-out [#* lines f"ht_linear_bwd_input({dx}, {(c gy)}, {(c w)}, {rows}, {in}, {out}, 0);"]
                             dx t False))
      ["sum_rows" gy v]
        (do (setv t (t-of v) [rows cols] (self.rows-cols (t-of gy)) [lines dv] (new t))
            (self.tensor-out [#* lines f"ht_fill({dv}, 0.0f, {cols});" f"ht_sum_rows({dv}, {(c gy)}, {rows}, {cols});"]
                             dv t False))
      ["nll_loss_grad" gl p tg mean]
        (do (setv t (t-of p) [rows cols] (self.rows-cols t) [lines dp] (new t))
            (self.tensor-out [#* lines f"ht_nll_loss_bwd({dp}, {(c gl)}[0], {(c tg)}, {rows}, {cols}, {(int (bool mean))}, 0);"]
                             dp t False))
      ["mse_loss_grad" gl x tg]
        (do (setv t (t-of x) [lines dx] (new t))
            (self.tensor-out [#* lines f"ht_mse_loss_bwd({dx}, {(c gl)}[0], {(c x)}, {(c tg)}, {(self.numel t)}, 0);"]
                             dx t False))
      [(| "sum_grad" "mean_grad") gl x]
        (do (setv t (t-of x) [lines dx] (new t) kernel (+ "ht_" (cut f 0 -5) "_all_bwd"))
            (self.tensor-out [#* lines f"{kernel}({dx}, {(c gl)}[0], {(self.numel t)}, 0);"] dx t False))
      ["mul_grad" gy other]
        (do (setv t (t-of gy) [lines dx] (new t))
            (self.tensor-out [#* lines f"ht_mul({dx}, {(c gy)}, {(c other)}, {(self.numel t)});"] dx t False))
      ["add_grads" g1 g2]
        (do (setv t (t-of g1) [lines y] (new t))
            (self.tensor-out [#* lines f"ht_add({y}, {(c g1)}, {(c g2)}, {(self.numel t)});"] y t False))
      ["grad_accumulate" v g]
        (do (setv p (self.param-of v scope) n p.numel)
            (Out [f"if ({p.has}) ht_axpy({p.grad}, 1.0f, {(c g)}, {n}); else ht_copy({p.grad}, {(c g)}, {n});"
                  f"{p.has} = 1;"]
                 None "none"))
      ["grad_accumulate_dot" v gy x]
        (do (setv p (self.param-of v scope) [out in] (. p.ttype shape)
                  [rows _] (self.rows-cols (t-of gy)))
            (Out [f"if (!{p.has}) ht_fill({p.grad}, 0.0f, {p.numel});"
                  f"ht_linear_bwd_weight({p.grad}, {(c gy)}, {(c x)}, {rows}, {in}, {out});"
                  f"{p.has} = 1;"]
                 None "none"))
      ["grad_accumulate_rows" v gy]
        (do (setv p (self.param-of v scope) [rows cols] (self.rows-cols (t-of gy)))
            (Out [f"if (!{p.has}) ht_fill({p.grad}, 0.0f, {p.numel});"
                  f"ht_sum_rows({p.grad}, {(c gy)}, {rows}, {cols});"
                  f"{p.has} = 1;"]
                 None "none"))
      ["sgd_dot_weight" v o gy x]
        (do (setv p (self.param-of v scope) hyper (get (. (self.optimizer-of o scope) info) "hyper")
                  [out in] (. p.ttype shape) [rows _] (self.rows-cols (t-of gy))
                  step f"ht_linear_bwd_weight_sgd({p.data}, {(or p.mom "NULL")}, {(c gy)}, {(c x)}, {rows}, {in}, {out}, {hyper}, (int){p.first});")
            (Out [#* (if (and self.pipeline (= (get self.pipeline "weight") (str v)))
                       (self.step-and-next-forward p hyper gy x rows in out step c)
                       [step])
                  f"{p.first} = 0;"]
                 None "none"))
      ["sgd_rows" v o gy]
        (do (setv p (self.param-of v scope) hyper (get (. (self.optimizer-of o scope) info) "hyper")
                  [rows cols] (self.rows-cols (t-of gy)))
            (Out [f"ht_bias_bwd_sgd({p.data}, {(or p.mom "NULL")}, {(c gy)}, {rows}, {cols}, {hyper}, (int){p.first});"
                  f"{p.first} = 0;"]
                 None "none"))
      _ None)))

