"The fusions as an IR-to-IR pass: the program the renderer renders, with explicit fused nodes.

In every chain of lets:

  (let Y (call relu (X)) ... (let P (call max_pool2d (Y KH KW SH SW)) ...))
      -> (let P (call relu_max_pool2d (X KH KW SH SW)) ...)
      when the pooling is Y's one use (the op table's relu_max_pool2d: the same values and
      gradients, without the relu's full-size output);

  (let Y (call conv2d (X W B SH SW PH PW)) (let R (call relu (Y)) ...))
      -> (let R (call conv2d_relu (X W B SH SW PH PW)) ...)
      when the relu, right after it, is Y's one use (the op table's conv2d_relu: the
      convolution writes its outputs relu'd). The pooling's fold goes first: a relu between a
      conv2d and a max_pool2d is folded into the pooling, which applies it to a quarter;

  (let Y (call conv2d (X W B SH SW PH PW)) (let P (call relu_max_pool2d (Y KH KW PSH PSW)) ...))
      -> (let P (call conv2d_relu_max_pool2d (X W B SH SW PH PW KH KW PSH PSW)) ...)
      when the pooling, right after it, is Y's one use (the op table's entry: the
      convolution's outputs pooled while in cache, never written whole).

Two rewrites inside the blocks of staged constructs (a training loop's body):

  (call L backward)  ->  (call L backward_and_step (O))
  (call O step)      ->  (call O step_remaining)
      when a block's lets call O's zero_grad, then one backward, then O's step, with no other
      zero_grad, backward or step between them and nothing between the backward and the step
      reading O's parameters, and O's step can be applied by the backward pass's kernels (the
      optimizer table's `fusable`). The backward pass then applies O's step to each parameter
      whose gradient one kernel completes, right there (grad.hy's sgd_dot_weight, sgd_rows);
      step_remaining steps the others.

  (for_dataloader LOADER (I X Y) BODY)  ->  (for_dataloader_pipelined LOADER (I X Y) (D W) BODY)
      when BODY's first `(let D (dot W X'))` reads the batch (X' is X or a view of it), W is a
      trainable variable that nothing else in BODY's lets mentions, and a backward_and_step in
      BODY steps W: W's step then reads the next batch and computes its D with the updated
      weights in the same sweep over W (c_data.hy's pipelined loop).

  (fuse (parse-ir \"(def f (in) (begin (begin (let o (SGD (0.1) (w)) (let l (while ... (begin
    (let z (call o zero_grad) (let b (call l backward) (let s (call o step) None))))) ...)))))\"))
  ; => the same program with (call l backward_and_step (o)) and (call o step_remaining)

Names are lexically scoped (an inner let shadows), so what a name stands for is looked up in
the scopes of the blocks around it."

(import hytorch.ir.syntax [Sym chain-lets chain-of]
        hytorch.ir.optimizers [OPTIMIZERS optimizer-node?]
        hytorch.backend.scope [Scope]
        hytorch.errors [IRError])

(setv BEGIN (Sym "begin") DEF (Sym "def"))


(defn names-in [nodes]
  "Every symbol in `nodes`, however deep (iteratively)."
  (setv out #{} stack [nodes])
  (while stack
    (setv x (.pop stack))
    (cond (isinstance x Sym) (.add out (str x))
          (isinstance x list) (.extend stack x)))
  out)


(defclass Optimizer []
  "What the pass knows of an optimizer's let: the names of the parameters it steps and whether
  the backward pass can apply its step."
  (defn __init__ [self params fusable]
    (setv self.params params self.fusable fusable)))


(defclass Trainable []
  "A trainable variable, known by the name of its `variable` let."
  (defn __init__ [self name] (setv self.name name)))


(defclass Names [Scope]
  "What each name of a block stands for, as far as the fusions care: an Optimizer, a
  Trainable (the variable's name, the tensor it wraps, or another name for either), or None
  (also for a name bound nowhere); the block's parent holds the names around it."

  (defn lookup [self name]
    (try (.lookup (super) name) (except [IRError] None)))

  (defn trainables [self]
    "The trainable variables in scope, for an optimizer given none (it steps them all)."
    (setv out #{} names self)
    (while (is-not names None)
      (.update out (gfor v (.values names.table) :if (isinstance v Trainable) v.name))
      (setv names names.parent))
    out)

  (defn reads-any [self nodes params]
    "Whether `nodes` mention any of the trainable variables named `params`, by any name."
    (any (gfor n (names-in nodes)
               :setv meaning (self.lookup n)
               (and (isinstance meaning Trainable) (in meaning.name params)))))

  (defn bind [self name rhs]
    "Bind `name` to what `(let NAME RHS ...)` makes it stand for."
    (.bind (super) name
      (match rhs
        ["variable" x volatile] :if (is volatile False)
          (do (setv trainable (Trainable (str name)))
              (when (isinstance x Sym)   ; its tensor is the same memory
                (.bind (super) x trainable))
              trainable)
        [op settings #* params] :if (optimizer-node? [op settings #* params])
          (Optimizer (if params (set (map str (get params 0))) (self.trainables))
                     (. (get OPTIMIZERS (str op)) fusable))
        other :if (isinstance other Sym) (self.lookup other)   ; another name for it
        _ None))))


(defn uses-of [name nodes]
  "How many times the symbol `name` occurs in `nodes`, however deep (iteratively)."
  (setv count 0 stack [nodes])
  (while stack
    (setv x (.pop stack))
    (cond (isinstance x Sym) (when (= x name) (+= count 1))
          (isinstance x list) (.extend stack x)))
  count)


(defn pools? [rhs y]
  "Whether `rhs` is `(call max_pool2d (Y ...))`."
  (match rhs
    ["call" "max_pool2d" [x #* _rest]] (= x y)
    _ False))


(defn relu-into-pooling [lets result]
  "`lets` with each `(let Y (call relu (X)))` whose one use is a later `(let P (call
  max_pool2d (Y KH KW SH SW)))` (Y not bound again between them) folded into `(let P (call
  relu_max_pool2d (X KH KW SH SW)))` (see the op table's entry)."
  (setv out (list lets) dropped #{})
  (for [[i [y rhs]] (enumerate lets)]
    (match rhs
      ["call" "relu" [x]]
        (do (setv later (cut lets (+ i 1) None)
                  at (next (gfor [j [name r]] (enumerate later)
                                 :if (or (= name y) (pools? r y))
                                 j)
                           None))
            (when (and (is-not at None) (!= (get later at 0) y)
                       (= (uses-of y [(lfor [_ r] later r) result]) 1))
              (setv [p [_ _ [_ #* attrs]]] (get later at)
                    (get out (+ i 1 at)) [p [(Sym "call") (Sym "relu_max_pool2d") [x #* attrs]]])
              (.add dropped i)))
      _ None))
  (lfor [i let] (enumerate out) :if (not-in i dropped) let))


(defn fold-pairs [lets result first second fused]
  "`lets` with each `(let Y (call FIRST ARGS))` right before `(let Z (call SECOND (Y MORE...)))`,
  Y's one use, folded into `(let Z (call FUSED (ARGS... MORE...)))`:
  (fold-pairs [[y (call conv2d (x w b 1 1 0 0))] [r (call relu (y))]] r \"conv2d\" \"relu\"
              \"conv2d_relu\")  ; => [[r (call conv2d_relu (x w b 1 1 0 0))]]"
  (setv out [] i 0)
  (while (< i (len lets))
    (setv [y rhs] (get lets i)
          following (cut lets (+ i 1) None))
    (match [rhs (if following (get following 0) None)]
      [["call" op args] [z ["call" then [x #* more]]]]
        :if (and (= op first) (= then second) (= x y)
                 (= (uses-of y [(lfor [_ later] following later) result]) 1))
        (do (.append out [z [(Sym "call") (Sym fused) [#* args #* more]]])
            (+= i 2))
      _ (do (.append out (get lets i))
            (+= i 1))))
  out)


(defn relu-into-convolution [lets result]
  "`lets` with each `(let Y (call conv2d (X W B SH SW PH PW)))` right before `(let R (call relu
  (Y)))`, Y's one use, folded into `(let R (call conv2d_relu (X W B SH SW PH PW)))` (see the
  op table's entry)."
  (fold-pairs lets result "conv2d" "relu" "conv2d_relu"))


(defn convolution-into-pooling [lets result]
  "`lets` with each `(let Y (call conv2d (X W B SH SW PH PW)))` right before `(let P (call
  relu_max_pool2d (Y KH KW PSH PSW)))`, Y's one use, folded into `(let P (call
  conv2d_relu_max_pool2d (X W B SH SW PH PW KH KW PSH PSW)))` (see the op table's entry)."
  (fold-pairs lets result "conv2d" "relu_max_pool2d" "conv2d_relu_max_pool2d"))


(defn fuse [program]
  "`program` (a `def` node) with the fusions applied; the same program when none applies."
  (match program
    ["def" name params ["begin" chain]] :if (isinstance params list)
      [DEF name params [BEGIN (fuse-chain chain (Names) False)]]
    _ program))


(defn fuse-block [block names nested]
  (match block
    ["begin" chain] [BEGIN (fuse-chain chain (Names names) nested)]
    _ block))


(defn fuse-chain [chain names nested]
  "A chain with its nested blocks fused, then its own lets when it is `nested` in a construct."
  (setv [lets result] (chain-lets chain)
        out [])
  (for [[name rhs] lets]
    (setv rhs (fuse-rhs rhs names))
    (.append out [name rhs])
    (.bind names name rhs))
  (setv result (if (and (isinstance result list) result (= (get result 0) "begin"))
                 (fuse-block result names nested)
                 result)
        out (relu-into-convolution
              (convolution-into-pooling (relu-into-pooling out result) result)
              result))
  (when nested
    (setv out (step-during-backward out names)))
  (chain-of out result))


(defn fuse-rhs [rhs names]
  "A let's right-hand side with the blocks of its construct fused."
  (match rhs
    ["if" test then else] [(Sym "if") test (fuse-block then names True) (fuse-block else names True)]
    ["while" test body] [(Sym "while") (fuse-block test names True) (fuse-block body names True)]
    ["while_taped" key test body]   ; (the autodiff pass's output, read back)
      [(Sym "while_taped") key (fuse-block test names True) (fuse-block body names True)]
    ["for_dataloader" loader vars body] :if (isinstance vars list)
      (pipelined-loop loader vars (fuse-block body (Names names) True) names)
    ["def" f params body] :if (isinstance params list) [DEF f params (fuse-block body names False)]
    _ rhs))


(defn step-during-backward [lets names]
  "`lets` with each zero_grad / backward / step of one optimizer that allows it rewritten to
  backward_and_step and step_remaining (see the module's docstring)."
  (setv calls [])
  (for [[i [_ rhs]] (enumerate lets)]
    (match rhs
      ["call" o "zero_grad"] (.append calls #(i "zero" (str o)))
      ["call" o "step"] (.append calls #(i "step" (str o)))
      ["call" l "backward"] (.append calls #(i "backward" (str l)))
      _ None))
  (setv out (list lets))
  (for [[k [_ kind o]] (enumerate calls)]
    (setv later (cut calls (+ k 1) (+ k 3))
          optimizer (names.lookup o))
    (when (and (= kind "zero") (= (len later) 2)
               (= (get (get later 0) 1) "backward")
               (= (cut (get later 1) 1 3) #("step" o))
               (isinstance optimizer Optimizer) optimizer.fusable)
      (setv backward-at (get (get later 0) 0)
            step-at (get (get later 1) 0))
      (when (not (names.reads-any (lfor [_ rhs] (cut lets (+ backward-at 1) step-at) rhs)
                                  optimizer.params))
        (setv [b-name [_ loss _]] (get lets backward-at)
              [s-name _] (get lets step-at)
              (get out backward-at) [b-name [(Sym "call") loss (Sym "backward_and_step") [(Sym o)]]]
              (get out step-at) [s-name [(Sym "call") (Sym o) (Sym "step_remaining")]]))))
  out)


(defn first-layer [body data]
  "#(D W) of the first `(let D (dot W X))` of a loop body's lets that reads the batch `data`
  (or a view of it), or None."
  (match body
    ["begin" chain] None
    _ (return None))
  (setv [lets _] (chain-lets (get body 1))
        aliases #{(str data)})
  (for [[name rhs] lets]
    (match rhs
      ["variable" x _] :if (in (str x) aliases) (.add aliases (str name))
      ["call" x "view" _] :if (in (str x) aliases) (.add aliases (str name))
      ["dot" w x] :if (in (str x) aliases) (return #(name w))
      _ None))
  None)


(defn pipelined-loop [loader vars body names]
  "The loop over `loader`, pipelined when its body allows it (see the module's docstring)."
  (setv plain [(Sym "for_dataloader") loader vars body]
        found (when (= (len vars) 3) (first-layer body (get vars 1))))
  (when (is found None)
    (return plain))
  (setv [dot w] found
        [lets _] (chain-lets (get body 1))
        inner (Names names))   ; (an optimizer may be made in the body)
  (for [[name rhs] lets] (.bind inner name rhs))
  (setv others (lfor [n rhs] lets :if (!= n dot) rhs)
        steps (lfor [_ rhs] lets
                    :if (and (isinstance rhs list) (= (len rhs) 4) (= (get rhs 2) "backward_and_step"))
                    :setv optimizer (inner.lookup (get (get rhs 3) 0))
                    :if (isinstance optimizer Optimizer)
                    optimizer))
  (setv weight (names.lookup w))
  (if (and (isinstance weight Trainable) (not (inner.reads-any others #{weight.name}))
           (any (gfor o steps (in weight.name o.params))))
    [(Sym "for_dataloader_pipelined") loader vars [dot w] body]
    plain))
