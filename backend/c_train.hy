"Rendering training to C: trainable variables' storage, the optimizers of
hytorch/ir/optimizers.hy (their state, `zero_grad`, `step`), the backward pass (the gradient
lets the autodiff pass, autodiff.hy, wrote into `(call L backward (begin LETS))`), and `(call L
backward_and_step (O) (begin LETS))` with `(call O step_remaining)`, where the fusion pass
(fusion.hy) found that O's step may be applied during the backward pass. A mixin of CRenderer
(c_render.hy)."

(import hytorch.backend.c_out [Out c-double c-float c-comment excerpt]
        hytorch.ir.syntax [Sym print-ir]
        hytorch.ir.optimizers [OPTIMIZERS]
        hytorch.ir.slots [SlotRole]
        hytorch.errors [IRError])


(defclass Param []
  "A trainable variable's storage: C expressions of its values, gradient, has-gradient and
  first-step flags, and the state its optimizer keeps for it (`state`: torch's name of a
  buffer or of the step count -> its C expression)."
  (defn __init__ [self name tensor data grad has first numel ttype]
    (setv self.name name self.tensor tensor self.data data self.grad grad self.has has
          self.first first self.numel numel self.ttype ttype self.state {}))

  (defn [property] mom [self]
    "SGD's momentum buffer (the fused SGD kernels take it), or None."
    (.get self.state "momentum_buffer")))


;; The nodes of a backward pass that are not ops of the table (grad.hy): a trainable variable's
;; gradient kept, or its optimizer's step applied to it right away (STEP-NODES).
(setv STEP-NODES #{"sgd_dot_weight" "sgd_rows"}
      GRADIENT-NODES #{"grad_accumulate" "grad_accumulate_dot" "grad_accumulate_rows" #* STEP-NODES})


(defn c-setting [setting value]
  "A setting's value as a C constant of its type: (c-setting lr 0.01) => \"0.01f\" (float)"
  (match setting.ctype
    "float" (c-float value)
    "double" (c-double value)
    "bool" (str (int (bool value)))))


(defclass TrainingRendering []
  "Optimizer and gradient nodes; expects TensorRendering's helpers."

  (defn optimizer-node [self name settings params scope target]
    "`(NAME (SETTINGS...) (PARAMS...))` of an optimizer of hytorch/ir/optimizers.hy: its
    per-parameter state as fields of the program's state, exposed as slots (the torch bridge
    copies them from and to the torch optimizer's state)."
    (setv entry (get OPTIMIZERS (str name))
          values (try (.settings-of entry (list settings))
                      (except [e ValueError] (raise (IRError (str e)))))
          params (if (is params None)
                   (list self.trainables)
                   (lfor p params
                         (do (setv b (.lookup scope p) info (.get b.info "param"))
                             (when (is info None)
                               (raise (IRError f"{name} parameter `{p}` is not a trainable variable")))
                             info)))
          buffers (.buffers-for entry values))
    (when (or buffers entry.count)
      (for [p params]
        (when p.state
          (raise (IRError f"`{p.name}` is optimized by two optimizers that keep state")))
        (for [b buffers]
          (self.optimizer-buffer p b.key))
        (when entry.count
          (self.optimizer-count p entry.count))))
    (Out [] "0" "optimizer" :declared True
         :info {"params" params
                "entry" entry
                "settings" values
                "hyper" (.join ", " (gfor s entry.settings (c-setting s (get values s.name))))
                "name" target}))

  (defn optimizer-buffer [self p key]
    "A zeroed buffer shaped like `p` (torch's initial state) named `key` in torch's state."
    (setv expr (self.state.buffer f"{p.name}_{key}" "float *" (* 4 p.numel)))
    (setv (get p.state key) expr)
    (self.state.slot expr SlotRole.OPTIMIZER-STATE :sym p.name :tensor p.tensor :numel p.numel :key key))

  (defn optimizer-count [self p key]
    "`p`'s step count, named `key` in torch's state."
    (setv [expr _] (self.state.field f"{p.name}_{key}" "int64_t"))
    (self.state.on-init f"{expr} = 0;")
    (setv (get p.state key) expr)
    (self.state.slot f"&{expr}" SlotRole.OPTIMIZER-STEP :sym p.name :tensor p.tensor :key key))

  (defn step-call [self entry values p]
    "The C call of `entry`'s step kernel on `p`, from the table's kernel form."
    (setv settings (dfor s entry.settings s.name s)
          buffers (sfor b entry.buffers b.key))
    (defn word [w]
      (setv w (str w))
      (cond (= w "param") p.data
            (= w "grad") p.grad
            (= w "numel") (str p.numel)
            (= w "first_step") f"(int){p.first}"
            (= w entry.count) (get p.state w)
            (in w buffers) (.get p.state w "NULL")
            (in w settings) (c-setting (get settings w) (get values w))
            True (raise (IRError f"unknown word `{w}` in {entry.name}'s step kernel call"))))
    (setv [kernel #* args] entry.kernel)
    f"{kernel}({(.join ", " (map word args))});")

  (defn optimizer-of [self x scope]
    (setv b (.lookup scope x))
    (when (!= b.type "optimizer")
      (raise (IRError f"`{x}` is a {b.type}, not an optimizer")))
    b)

  (defn zero-grad [self o scope]
    (Out (lfor p (get (. (self.optimizer-of o scope) info) "params") f"{p.has} = 0;")
         None "none"))

  (defn step [self o scope [remaining False]]
    "The step of each parameter with a gradient: its count advanced first (Adam's), its
    first-step flag cleared after (SGD's); `(call O step_remaining)` skips the parameters
    the last `backward_and_step` of O stepped already."
    (setv b (self.optimizer-of o scope)
          entry (get b.info "entry")
          fused (if remaining (.pop self.fused-vars (str o) #{}) #{})
          lines [])
    (for [p (get b.info "params")]
      (when (not-in p.name fused)
        (.extend lines
          [f"if ({p.has}) {{"
           #* (if entry.count [f"  {(get p.state entry.count)} += 1;"] [])
           f"  {(self.step-call entry (get b.info "settings") p)}"
           f"  {p.first} = 0;"
           "}"])))
    (Out lines None "none"))

  ;; ------------------------------------------------------------ backward

  (defn backward-node [self loss block scope [optimizer None]]
    "`(call L backward (begin LETS))`, or `(call L backward_and_step (O) (begin LETS))`: the
    backward pass of L the autodiff pass derived (autodiff.hy); in the latter, LETS apply
    O's step to some of its parameters (their `sgd_*` nodes), and O's step_remaining steps
    the others."
    (setv lb (self.tensor loss scope "backward"))
    (when (is block None)
      (raise (IRError f"internal error: the autodiff pass left the backward pass of `{loss}` underived")))
    (when optimizer
      (self.optimizer-of optimizer scope)
      (setv (get self.fused-vars (str optimizer))
            (sfor [_ rhs] (get (self.block-lets block) 0)
                  v (match rhs
                      ["call" f [v #* _rest]] :if (in f STEP-NODES) [(str v)]
                      _ [])
                  v)))
    (setv lines [(c-comment f"backward of {loss}")]
          gradients (.child scope))   ; their names stay out of the program's scope
    (setv self.in-backward True)   ; (its `bptt` nodes render only here)
    (try
      (.extend lines (self.render-block-lets block gradients))
      (finally (setv self.in-backward False)))
    (Out lines lb.cname "tensor" :declared True :info lb.info))

  (defn block-lets [self block]
    "The lets of a block of gradient lets, `(begin (let g0 ... (let gN ... None)))`."
    (match block
      ["begin" chain] (self.lets-of chain)
      _ (raise (IRError f"gradient lets come as (begin (let ...)), not {(excerpt block)}"))))

  (defn render-block-lets [self block scope]
    "C of a block of gradient lets, each bound in `scope` (rendered as any chain is)."
    (self.block-lets block)   ; (the check of its form)
    (get (self.chain (get block 1) scope) 0))

  (defn param-of [self v scope]
    (setv info (.get (. (.lookup scope v) info) "param"))
    (when (is info None)
      (raise (IRError f"`{v}` is not a trainable variable")))
    info)

  (defn fused-node [self f args scope target]
    "The nodes of the backward pass that are not ops of the table (see grad.hy): a trainable
    variable's gradient kept, or its optimizer's step applied right away."
    (defn t-of [x] (self.ttype (self.tensor x scope f)))
    (defn c [x] (. (self.tensor x scope f) cname))
    (match [f #* args]
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
      _ (raise (IRError f"malformed {f} node: {(print-ir [(Sym "call") (Sym f) args])}")))))
