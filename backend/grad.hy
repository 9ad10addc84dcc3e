"Reverse-mode gradients from a tape of forward ops: the lets of one backward pass.

The autodiff pass (autodiff.hy) keeps a tape of the program's forward tensor ops (op, output
name, input names). `backward-lets` walks it from the loss back to the leaves and returns the
backward pass as IR: one let per gradient. An op of the table (hytorch/ir/ops.hy) gives its
gradient as IR in its entry, e.g. `(call relu_grad (GY Y))` for `(call relu (X))`; the bespoke
ops' gradients are here, made of the table's backward ops:

  (call ones_like (L))                 dL/dL
  (call dot_grad_input (GY W))         dX of (dot W X)
  (call sum_rows (GY V))               dV of a row vector V broadcast over GY's rows
  (call mul_grad (GY OTHER))           (* A B): dA = GY * B
  (call scale (GY S))                  (- A B): dB = -GY
  (call GY view (DIMS))                a view's gradient is the same elements, reshaped
  (call add_grads (G1 G2))             a value used twice gets the sum of its gradients

An op's gradient is None for an input that needs none, and for an optional input that is
absent (conv2d without bias, `(call conv2d (X W None ...))`). A trainable variable that is an
input of a table op (conv2d's weight and bias) gets its total through grad_accumulate.

and, for each trainable variable V reached, one of

  (call grad_accumulate (V G))         V.grad += G (or = after zero_grad)
  (call grad_accumulate_dot (V GY X))  V.grad += GY^T X, for V the weight of (dot V X)
  (call grad_accumulate_rows (V GY))   V.grad += row sums of GY, for a bias V
  (call sgd_dot_weight (V O GY X))     the step of optimizer O applied to V with GY^T X, when
  (call sgd_rows (V O GY))             the backward pass is a backward_and_step of O (fusion.hy)
                                       and this is V's only gradient

Example: for (let y (dot w x) (let z (call relu (y)) (let l (call sum (z)) ...))) the
backward of l is
  (let g0 (call ones_like (l)) (let g1 (call sum_grad (g0 z)) (let g2 (call relu_grad (g1 z))
   (let g3 (call grad_accumulate_dot (w g2 x)) ...))))"

(import hytorch.ir.syntax [Sym print-ir]
        hytorch.ir.ops [OPS call]
        hytorch.errors [IRError])

(setv CALL (Sym "call"))


(defclass Record []
  "One forward tensor op on the tape: `node` bound to `out`, reading the names `inputs`.
  `row-vectors` names the operands broadcast over rows; `input-shape` is a view's input
  shape; `binding` is the output's binding (to tell whether `out` still names it)."
  (defn __init__ [self node out inputs binding [row-vectors #{}] [input-shape None] [outs None]]
    (setv self.node node self.out out self.inputs inputs self.binding binding
          self.row-vectors row-vectors self.input-shape input-shape self.outs outs))

  (defn outputs [self]
    "[[name binding] ...] of what the op writes: its result, or a loop's cells."
    (or self.outs [[self.out self.binding]]))

  (defn broadcast [self operand]
    (in (str operand) self.row-vectors))

  (defn input-dims [self]
    (list self.input-shape)))


(defclass Backward []
  "Builds the backward lets of one `(call L backward)`.

  `live` tells whether a name's binding is still the one a record saw (names are lexically
  scoped); `requires-grad` whether a name is a trainable variable or depends on one;
  `trainable` whether it is a trainable variable (a leaf whose gradient is kept);
  `fused` maps a trainable variable to the optimizer whose step may be applied right away;
  `bptt` makes the node of a differentiable loop's backward (see `loop-rule`)."
  (defn __init__ [self tape loss fresh live requires-grad trainable fused bptt [seeds None]]
    (setv self.tape tape self.loss loss self.fresh fresh self.live live
          self.requires-grad requires-grad self.trainable trainable self.fused fused
          self.bptt bptt self.seeds (or seeds {})
          self.lets [] self.grads {} self.contributions {} self.fused-done #{}))

  (defn emit [self rhs]
    (setv sym (self.fresh))
    (.append self.lets [sym rhs])
    sym)

  (defn emit-node [self node [emitted None]]
    "Emit a gradient of the op table, `(call NAME (OPERANDS...))` whose operands may be such
    nodes themselves (emitted first, each in a let of its own). A node met again (`emitted`:
    {its text: symbol}, e.g. conv2d_relu's relu_grad in each of its gradients) is emitted
    once: the ops are pure."
    (when (is emitted None) (setv emitted {}))
    (setv key (print-ir node))
    (when (in key emitted) (return (get emitted key)))
    (setv [head f operands] node
          sym (self.emit [head f (lfor o operands
                                       (if (isinstance o list) (self.emit-node o emitted) o))])
          (get emitted key) sym)
    sym)

  (defn add [self name grad]
    "Add `grad` (a symbol) to the gradient of `name`."
    (setv key (str name))
    (if (in key self.grads)
      (setv (get self.grads key) (self.emit (call "add_grads" (get self.grads key) grad)))
      (setv (get self.grads key) grad)))

  (defn leaf [self name fused-node plain-node]
    "A trainable variable's share that has a kernel of its own: the optimizer's step applied
    right away when the block allows it and this is the variable's only use, else added to
    its gradient."
    (setv key (str name) optimizer (.get self.fused key))
    (if (and optimizer (= (.get self.contributions key) 1))
      (do (self.emit (fused-node optimizer)) (.add self.fused-done key))
      (self.emit plain-node)))

  (defn needs [self name]
    (self.requires-grad name))

  (defn count-contributions [self records]
    "How many gradient contributions each trainable variable receives (fusion needs one)."
    (for [r records]
      (for [n r.inputs]
        (when (and (self.trainable n) (self.needs n))
          (setv (get self.contributions (str n)) (+ 1 (.get self.contributions (str n) 0)))))))

  (defn run [self]
    "The backward lets, and the names of the variables whose step was fused into them."
    (setv records (self.reachable))
    (when (any (gfor r records (= (get r.node 0) "loop")))
      ;; a loop's backward runs its body again: no step may change a weight before that
      (setv self.fused {}))
    (self.count-contributions records)
    (if (is self.loss None)
      (.update self.grads self.seeds)
      (setv (get self.grads (str self.loss)) (self.emit (call "ones_like" self.loss))))
    (for [r (reversed records)]
      (if (= (get r.node 0) "loop")
        (self.loop-rule r)
        (do (setv gy (.get self.grads (str r.out)))
            (when (is-not gy None)
              (self.rule r gy)))))
    (for [[name grad] (list (.items self.grads))]
      (when (and (self.trainable name) (!= name (str self.loss)))
        (self.emit (call "grad_accumulate" (Sym name) grad))))
    #(self.lets self.fused-done))

  (defn loop-rule [self r]
    "A differentiable loop (record `(loop LOOP)`, its inputs its cells then the outer tensors
    it reads): its cells' gradients when it ended in, their gradients when it began and its
    outer tensors' out, as one node that `self.bptt` makes of the loop, the seeds (a symbol
    or None per cell) and the names it binds (one per input)."
    (setv [_ loop] r.node
          cells (lfor [name _] (.outputs r) name)
          seeds (lfor c cells (.pop self.grads (str c) None)))
    (when (all (gfor g seeds (is g None)))
      (return))
    (setv outs (lfor _ r.inputs (self.fresh)))
    (.append self.lets [(self.fresh) (self.bptt loop seeds outs)])
    (for [[x g] (zip r.inputs outs)]
      (self.into x g)))

  (defn reachable [self]
    "The live records the loss depends on, in forward order."
    (setv wanted (if (is self.loss None) (set (map str self.seeds)) #{(str self.loss)})
          out [])
    (for [r (reversed self.tape)]
      (when (any (gfor [name binding] (.outputs r)
                       (and (in (str name) wanted) (self.live name binding))))
        (.append out r)
        (.update wanted (gfor n r.inputs :if (self.needs n) (str n)))))
    (list (reversed out)))

  (defn into [self name grad]
    "Give `grad` to input `name` (a trainable variable's total is kept after the walk)."
    (when (self.needs name)
      (self.add name grad)))

  (defn rule [self r gy]
    "Emit the gradients of record `r`'s inputs, given `gy` for its output."
    (setv node r.node)
    (match node
      ["dot" w x]
        (do (when (self.needs x)
              (self.into x (self.emit (call "dot_grad_input" gy w))))
            (when (self.needs w)
              (if (self.trainable w)
                (self.leaf w (fn [optimizer] (call "sgd_dot_weight" w optimizer gy x))
                           (call "grad_accumulate_dot" w gy x))
                (raise (IRError f"the weight of a dot that needs gradients must be a trainable variable, not `{w}`")))))
      [(| "+" "-") a b]
        (for [[operand sign] [[a 1] [b (if (= (get node 0) "+") 1 -1)]]]
          (when (self.needs operand)
            (setv rows-of-other (.broadcast r operand))
            (cond
              (and rows-of-other (self.trainable operand) (= sign 1))
                (self.leaf operand (fn [optimizer] (call "sgd_rows" operand optimizer gy))
                           (call "grad_accumulate_rows" operand gy))
              rows-of-other
                (self.into operand (self.signed (self.emit (call "sum_rows" gy operand)) sign))
              True (self.into operand (self.signed gy sign)))))
      ["*" a b]
        (do (when (self.needs a) (self.into a (self.emit (call "mul_grad" gy b))))
            (when (self.needs b) (self.into b (self.emit (call "mul_grad" gy a)))))
      ["call" f operands] :if (and (isinstance operands list) (in f OPS) (. (get OPS f) differentiable))
        (do (setv emitted {})
            (for [[x g] (zip operands (.gradients (get OPS f) gy r.out operands))]
              (when (and (is-not g None) (self.needs x))
                (self.into x (if (isinstance g Sym) g (self.emit-node g emitted))))))
      ["call" x "view" dims]
        (self.into x (self.emit [CALL gy (Sym "view") (.input-dims r)]))
      ["get" cell]   ; reading a cell: its gradient from here back adds up the reads'
        (self.into cell gy)
      ["set" cell value]   ; the value the cell held from here on: it takes the gradient
        (do (.pop self.grads (str cell))
            (self.into value gy))
      _ None))

  (defn signed [self g sign]
    (if (= sign 1) g (self.emit (call "scale" g -1.0)))))


(defn backward-from-seeds [tape seeds fresh live requires-grad trainable bptt]
  "The backward pass of a loop's body (autodiff.hy): from `seeds` ({name: gradient symbol}),
  the gradients of its cells when the body ended, back through the ops of `tape`. Returns
  #(lets {name: gradient symbol}) for each name reached (the cells' at the body's start)."
  (setv b (Backward tape None fresh live requires-grad trainable {} bptt seeds)
        [lets _] (.run b))
  #(lets b.grads))


(defn backward-lets [tape loss fresh live requires-grad trainable fused bptt]
  "The backward pass of `loss` as [[sym rhs] ...] and the variables whose step it applied."
  (.run (Backward tape loss fresh live requires-grad trainable fused bptt)))
