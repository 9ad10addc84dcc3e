"Rendering data loaders to C: transforms, `loader`, `len` and `for_dataloader`, whose loop
reads batches with no Python in it. A loader reads MNIST-format images or the user's arrays
(c_runtime/ht_data.h), one sample's shapes in its info:

  (loader (MNIST True True x3 64 False))   ; data [64 1 28 28] float32, target [64] int64
  (loader (arrays (3) (1) float32 16))     ; data [16 3] float32, target [16 1] float32

A training loop whose first layer's SGD step is applied during the backward pass is
pipelined: the next batch is read during that step and its first-layer outputs computed in
the same pass over the weights (ht_linear_bwd_weight_sgd_fwd). When that pass is split
over threads, each reads all of the batch from a copy of its own, which stays in its cache:
each thread fills its copy (ht_batches_ready), the workers' a step ahead, while the caller
runs the rest of the step (ht_data.h's ht_batches).
A mixin of CRenderer (c_render.hy)."

(import math
        hytorch.backend.c_out [Out c-float excerpt indent]
        hytorch.backend.c_tensor [C-ELEMENT ELEMENT-BYTES]
        hytorch.backend.printf [c-string]
        hytorch.ir.syntax [Sym real-number?]
        hytorch.backend.scope [Binding]
        hytorch.ir.types [TensorType]
        hytorch.ir.slots [SlotRole]
        hytorch.backend.fusion [first-layer]
        hytorch.errors [IRError])


(defn positive-sizes? [sizes]
  "Whether `sizes` is a list of integers of at least 1: (positive-sizes? [2 3]) => True"
  (and (isinstance sizes list)
       (all (gfor d sizes (and (isinstance d int) (not (isinstance d bool)) (>= d 1))))))


(defclass DataRendering []
  "Loader nodes; expects TensorRendering's helpers and TrainingRendering's fusion planning."

  (defn transform [self kind args]
    (match [kind #* args]
      ["toTensor"] (Out [] "0" "transform" :declared True :info {"mean" 0.0 "std" 1.0})
      ["normalize" [mean std]] :if (and (real-number? mean) (real-number? std))
        (Out [] "0" "transform" :declared True :info {"mean" (float mean) "std" (float std)})
      _ (raise (IRError (+ f"(transform {(excerpt [kind #* args])}): a transform is toTensor "
                           "or normalize (MEAN STD), two numbers")))))

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
        :if (and (<= (len rest) 2) (isinstance train bool) (isinstance download bool)
                 (positive-sizes? (cut rest 0 1))
                 (all (gfor x (cut rest 1 None) (isinstance x bool))))
        (do (setv tb (.lookup scope transform)
                  [batch shuffle] (+ (list rest) (cut [1 False] (len rest) None))
                  [rows cols] (.get self.loader-dims (str target) #(28 28)))
            (when (!= tb.type "transform")
              (raise (IRError f"the loader's transform `{transform}` is a {tb.type}")))
            (self.loader-out target "MNIST" batch [1 rows cols] [] "int64"
                             :train (bool train) :shuffle (bool shuffle)
                             :mean (get tb.info "mean") :std (get tb.info "std")))
      ["MNIST" #* _args]
        (raise (IRError (+ f"(loader {(excerpt spec)}): an MNIST loader is (MNIST TRAIN DOWNLOAD "
                           "TRANSFORM [BATCH [SHUFFLE]]), TRAIN, DOWNLOAD and SHUFFLE True or "
                           "False, BATCH an int of at least 1")))
      ["arrays" #* args] (self.arrays-loader spec target)
      _ (raise (IRError f"unknown data set in (loader {(excerpt spec)})"))))

  (defn arrays-loader [self spec target]
    "`(arrays (INPUT-SHAPE) (TARGET-SHAPE) TARGET-DTYPE BATCH)`: an ArrayLoader's arrays, by
    the shapes of one sample's input and target."
    (match spec
      [_ input-shape target-shape dtype batch]
        :if (and (positive-sizes? input-shape) (positive-sizes? target-shape)
                 (positive-sizes? [batch]) (in (str dtype) #("int64" "float32")))
        (self.loader-out target "arrays" batch input-shape target-shape (str dtype))
      _ (raise (IRError (+ f"(loader {(excerpt spec)}): an array loader is (arrays (INPUT-SHAPE) "
                           "(TARGET-SHAPE) int64|float32 BATCH), with sizes of at least 1")))))

  (defn loader-out [self target source batch input-shape target-shape target-dtype #** info]
    "A loader of the state: its slot (what Python binds to it), the element types C reads
    (MNIST's are the zero ones) and its batches' shapes in its info."
    (setv [expr _] (self.state.field target "ht_loader" f"(loader ({source} ...))"))
    (when (= source "arrays")
      (self.state.on-init (.join " " [f"{expr}.images_type = HT_FLOAT32;"
                                           f"{expr}.labels_type = HT_{(.upper target-dtype)};"
                                           f"{expr}.target_size = {(math.prod target-shape)};"])))
    (self.state.on-free f"ht_loader_release(&{expr});")
    (self.state.slot f"&{expr}" SlotRole.LOADER :sym target :source source :batch_size batch
               :input_shape (list input-shape) :target_shape (list target-shape)
               :target_dtype target-dtype #** info)
    (Out [] expr "loader" :declared True
         :info {"batch" batch
                "data" (TensorType [batch #* input-shape] "float32")
                "target" (TensorType [batch #* target-shape] target-dtype)}))

  (defn size-field [self name bytes]
    "A size_t field of the state holding `bytes` when it is made (a buffer's size): its C
    expression."
    (setv [size _] (self.state.field name "size_t" "bytes at the batch's pointer"))
    (self.state.on-init f"{size} = {bytes};")
    size)

  (defn loader-of [self x scope]
    (setv b (.lookup scope x))
    (when (!= b.type "loader")
      (raise (IRError f"`{x}` is a {b.type}, not a loader")))
    b)

  (defn len-node [self x scope]
    (Out [] f"ht_loader_len(&{(. (self.loader-of x scope) cname)})" "int"))

  (defn for-dataloader [self loader names body scope [pipelined None]]
    "`(for_dataloader LOADER (I X Y) BODY)`, or `(for_dataloader_pipelined ... (D W) BODY)`
    whose first layer D = (dot W X) fusion.hy pipelined."
    (when (!= (len names) 3)
      (raise (IRError "for_dataloader binds (INDEX DATA TARGET)")))
    (setv lb (self.loader-of loader scope)
          [index data target] names
          batch (get lb.info "batch")
          data-type (get lb.info "data")
          target-type (get lb.info "target")
          y-element (get C-ELEMENT target-type.dtype)
          i (self.names.fresh index)
          n (self.names.fresh f"{index}_batches")
          rows-var (self.names.fresh f"{index}_rows")
          mark (self.names.fresh f"{index}_arena")
          plan (self.pipeline-of pipelined body data scope)
          buffers (if plan #("a" "b") #("a"))
          xs (lfor b buffers (get (self.state.field f"{data}_batch_{b}" "float *" "a batch of inputs") 0))
          ys (lfor b buffers (get (self.state.field f"{target}_batch_{b}" f"{y-element} *"
                                                    "a batch of targets") 0))
          [x-cur y-cur] (if plan
                          [(self.names.fresh f"{data}_current") (self.names.fresh f"{target}_current")]
                          [(get xs 0) (get ys 0)])
          inner (.child scope))
    (for [x xs] (self.state.allocate x (* 4 data-type.numel)))
    (setv x-bytes (when plan
                    (lfor x xs (self.size-field f"{data}_batch_bytes" (* 4 data-type.numel)))))
    (for [y ys] (self.state.allocate y (* (get ELEMENT-BYTES target-type.dtype) target-type.numel)))
    (.bind inner index (Binding i "int"))
    (.bind inner data (Binding x-cur "tensor" :ttype (TensorType data-type.shape "float32" rows-var)
                               :requires-grad False))
    (.bind inner target (Binding y-cur "tensor"
                                 :ttype (TensorType target-type.shape target-type.dtype rows-var)
                                 :requires-grad False))
    (when plan
      (setv dot (get plan "dot")
            outs (lfor b buffers (get (self.state.field f"{dot}_{b}" "float *"
                                                         "a batch's first-layer outputs") 0)))
      (for [o outs] (self.state.allocate o (* 4 batch (get plan "out"))))
      (.update plan {"index" i "count" n "loader" lb.cname "rows" rows-var "y-element" y-element
                     "batch" batch "in" (// data-type.numel batch) "x-bytes" x-bytes
                     "copies" (self.names.fresh f"{data}_copies")
                     "batches" (get (self.state.field f"{data}_batches" "ht_batches"
                                                     "the pipelined loop's batches") 0)
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
    (setv what (c-string f"loader {loader}")
          head [f"if (!{lb.cname}.order) return ht_unbound({what});"
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

  (defn pipelined-loop [self head plan xs ys outs x-cur y-cur mark body-lines]
    "The loop when the first layer's SGD step is fused with the next batch's forward: the
    next batch is read during the backward pass and its first-layer outputs computed with
    the updated weights, in the same pass over them (double buffers swap at the end)."
    (setv [i n loader rows rows-next ready prefetched out-cur out-next x-next y-next y-element
           copies batches batch in out]
          (lfor k ["index" "count" "loader" "rows" "rows-next" "ready" "prefetched" "out-cur"
                   "out-next" "x-next" "y-next" "y-element" "copies" "batches" "batch" "in" "out"]
                (get plan k))
          [xa xb] xs [ya yb] ys [oa ob] outs)
    (Out [#* head
          ;; After head's ht_loader_begin_epoch, which settles the workers' fills of the
          ;; buffers that ht_reserve may move.
          f"int {copies} = ht_linear_sgd_fwd_copies({batch}, {in}, {out});"
          #* (lfor [x size] (zip xs (get plan "x-bytes"))
               (+ f"{{ void *more = ht_reserve({x}, &{size}, (size_t){copies} * {(* 4 batch in)}); "
                  f"if (!more) return HT_ERROR; {x} = more; }}"))
          f"ht_batches_begin(&{batches}, &{loader}, {xa}, {xb}, {copies});"
          f"float *{x-cur} = {xa}, *{x-next} = {xb};"
          f"{y-element} *{y-cur} = {ya}, *{y-next} = {yb};"
          f"float *{out-cur} = {oa}, *{out-next} = {ob};"
          f"int64_t {rows} = 0, {rows-next} = 0;"
          f"int {ready} = 0, {prefetched} = 0;"
          f"for (int64_t {i} = 0, {n} = ht_loader_len(&{loader}); {i} < {n}; {i}++) {{"
          "  if (ht_interrupted) return ht_interrupt_status();"
          f"  if (!{ready}) {rows} = ht_batches_fill(&{batches}, {i}, {y-cur});"
          f"  size_t {mark} = ht_s->arena.top;"
          #* (indent body-lines)
          f"  {ready} = {prefetched};"
          f"  if ({prefetched}) {{"
          f"    float *swap_x = {x-cur}; {x-cur} = {x-next}; {x-next} = swap_x;"
          f"    {y-element} *swap_y = {y-cur}; {y-cur} = {y-next}; {y-next} = swap_y;"
          f"    float *swap_o = {out-cur}; {out-cur} = {out-next}; {out-next} = swap_o;"
          f"    {rows} = {rows-next};"
          f"    {prefetched} = 0;"
          "  }"
          f"  ht_s->arena.top = {mark};"
          "}"]
         None "none"))

  (defn pipeline-of [self pipelined body data scope]
    "The plan of a pipelined loop from its node's (D W), checked: D is the body's first layer
    (fusion.hy's first-layer) and W a trainable variable of the program."
    (when (is pipelined None)
      (return None))
    (setv [dot w] pipelined
          param (.get (. (.lookup scope w) info) "param"))
    (when (or (is param None) (!= (first-layer body data) #(dot w)))
      (raise (IRError (+ f"for_dataloader_pipelined: ({dot} {w}) must name the body's first "
                         f"layer, (let {dot} (dot {w} X)) on the batch, {w} a trainable variable"))))
    {"weight" (str w) "dot" (str dot) "out" (get param.ttype.shape 0)})

  (defn step-and-next-forward [self p hyper gy x rows in out step c]
    "The pipelined first layer's step: read the next batch and compute its outputs with the
    updated weights in the same pass (see pipelined-loop)."
    (setv [i n rows-next x-next y-next out-next prefetched copies batches]
          (lfor k ["index" "count" "rows-next" "x-next" "y-next" "out-next" "prefetched"
                   "copies" "batches"]
                (get self.pipeline k))
          mom (or p.mom "NULL"))
    [f"if ({i} + 1 < {n}) {{"
     f"  {rows-next} = ht_batches_next(&{batches}, {i} + 1, {y-next});"
     f"  ht_linear_bwd_weight_sgd_fwd({p.data}, {mom}, {(c gy)}, {(c x)}, {rows}, {in}, {out}, {hyper}, (int){p.first}, {out-next}, {x-next}, {rows-next}, {copies}, ht_batches_ready, &{batches});"
     f"  {prefetched} = 1;"
     "} else {"
     f"  {step}"
     "}"]))
