"Reverse-mode differentiation as an IR-to-IR pass, after type inference (infer.hy).

The pass walks the typed program once more (the type pass's walk, its kinds settled), keeps a
tape of the forward tensor ops (grad.hy's Record: op, output, inputs) and writes each backward
pass into the program, so that the renderer only renders:

  (call L backward)               -> (call L backward (begin GRADIENT-LETS))
  (call L backward_and_step (O))  -> (call L backward_and_step (O) (begin GRADIENT-LETS))

GRADIENT-LETS are grad.hy's: `(let g0 (call ones_like (L)) (let g1 (call sum_grad (g0 z)) ...
None))`, names no let of the program binds, seen only inside the block.

Loops whose trip count is known only at run time (c_bptt.hy renders them). A `while` whose
body reads a cell holding a tensor that needs gradients, in a program with a backward pass,
saves at each iteration the values of the cells its body reads (tape K):

  (while TEST BODY)  ->  (while_taped K TEST BODY)

and a backward pass that reaches it runs its iterations again, last to first, as

  (bptt K ((CELL SEED ITER OUT FINAL) ...) ((INPUT OUT FINAL) ...) (begin BODY-GRADIENT-LETS))

CELL: a cell carrying gradients from iteration to iteration; SEED: its gradient when the loop
ended (None: zero); ITER: the name of its gradient at an iteration's end, which
BODY-GRADIENT-LETS (the body's backward, after the body's forward again) start from; FINAL:
the name they give its gradient at the iteration's start (None: zero); OUT: the name bound to
its gradient when the loop began, for the rest of the backward pass. INPUT: an outer tensor the
body reads that needs gradients; OUT is bound to the sum over the iterations of its FINAL.

  (differentiate (infer program [\"object\"]) [\"object\"])
  ; => a Typing whose program has (call l backward (begin (let g0 (call ones_like (l)) ...)))

The refusals (a backward pass that cannot be derived) are IRErrors of this pass; what the
type pass could not type is left to the renderer, which says what is wrong with it."

(import hytorch.ir.syntax [Sym chain-of print-ir]
        hytorch.ir.ops [OPS row-vector-operand]
        hytorch.ir.optimizers [OPTIMIZERS]
        hytorch.ir.types :as shapes
        hytorch.backend.infer [Inference Typing value-of]
        hytorch.backend.kinds [TensorCellKind]
        hytorch.backend.grad [Record backward-lets backward-from-seeds]
        hytorch.backend.ir-queries [free-syms calls-of uses-backward]
        hytorch.errors [IRError])

(setv BEGIN (Sym "begin") BPTT (Sym "bptt") WHILE-TAPED (Sym "while_taped")
      LOOP (Sym "loop") SET (Sym "set"))


(defclass TapedLoop []
  "A differentiable loop as the pass saw it: its number, the scope it is in, the cells that
  carry gradients ([sym value ttype]), the outer tensors it reads that need gradients ([sym
  value]), its body's tape and the scope at its body's end."
  (defn __init__ [self key scope cells inputs]
    (setv self.key key self.scope scope self.cells cells self.inputs inputs
          self.tape [] self.body-scope None))

  (defn record [self]
    "The loop on its enclosing tape: its tensor cells in and out, the outer tensors in."
    (Record [LOOP self] (get self.cells 0 0)
            [#* (lfor [s _ _] self.cells s) #* (lfor [s _] self.inputs s)]
            (get self.cells 0 1)
            :outs (lfor [s v _] self.cells [s v]))))


(defn bound? [name scope]
  (try (.lookup scope name) True (except [IRError] False)))


(defclass Differentiation [Inference]
  "The walk of a typed program that records the tape and derives its backward passes."

  (setv PROPAGATE #(IRError))   ; the pass's refusals (typing stays lenient: see infer.hy)

  (defn __init__ [self typing arg-kinds loader-dims]
    (.__init__ (super) typing.program arg-kinds loader-dims)
    (setv self.functions (dict typing.functions)
          self.has-backward (uses-backward typing.program)
          self.tape []
          self.trainables []   ; the trainable variables made so far, by name
          self.next-loop 0
          self.next-gradient 0))

  (defn run [self]
    "The program with its backward passes written in (it rewrites the copy it numbers)."
    (setv self.program (self.number-cells self.program)
          self.changed False
          self.nested 0)
    (self.walk-program)
    (when self.changed
      (raise (IRError "internal error: the autodiff pass found kinds the type pass did not")))
    (Typing (self.annotate self.program) self.functions))

  ;; ------------------------------------------------------------ the walk

  (defn rhs [self node scope target]
    (match node
      ["while" test body] (self.while-node node test body scope None)
      ["while_taped" key test body] :if (isinstance key int)   ; (this pass's output read back)
        (self.while-node node test body scope key)
      _ (self.recorded node scope target (.rhs (super) node scope target))))

  (defn recorded [self node scope target value]
    "`value`, the type pass's of `(let TARGET NODE)`, after NODE's forward op is put on the
    tape, a trainable variable or an optimizer noted, or a backward pass derived."
    (setv tensor (= value.type "tensor"))
    (match node
      ["variable" _ _] :if (is (.get value.info "param") True)
        (do (setv (get value.info "param") target)   ; (a trainable variable is known by its let)
            (.append self.trainables target))
      [name settings #* params] :if (= value.type "optimizer")
        (self.note-optimizer value name (when params (get params 0)) scope)
      ["dot" w x] :if tensor (self.record node target [w x] value)
      [op a b] :if (and tensor (in op #("+" "-" "*")))
        (self.record node target [a b] value (self.row-vectors op a b scope))
      ["call" f args] :if (and tensor (isinstance f Sym) (in f OPS) (. (get OPS f) differentiable))
        (self.record node target (lfor x (cut args (len (. (get OPS f) inputs))) :if (is-not x None) x)
                     value)
      ["call" x "view" dims] :if tensor
        (self.record node target [x] value :input-shape (. (self.ttype-of x scope) shape))
      ["get" cell] :if (and tensor (.get value.info "requires-grad"))
        (self.record node target [cell] value)
      ["set" cell x] (self.record-set cell x scope)
      ["call" loss "backward"] (self.backward node loss None scope)
      ["call" loss "backward_and_step" [o]] (self.backward node loss o scope)
      _ None)
    value)

  (defn record [self node target inputs value [row-vectors #{}] [input-shape None]]
    (.append self.tape (Record node (Sym target) inputs value row-vectors input-shape)))

  (defn row-vectors [self op a b scope]
    "The operand of `(+ A B)` broadcast over the other's rows, as a set (of none or one)."
    (match (row-vector-operand (str op) (self.ttype-of a scope) (self.ttype-of b scope))
      None #{}
      1 #{(str b)}
      0 #{(str a)}))

  (defn record-set [self cell x scope]
    "A cell set to a tensor: the value it holds from here on takes the cell's gradient."
    (setv c (self.atom cell scope))
    (when (and (= (. (self.atom x scope) type) "tensor") (self.requires-grad c))
      (.append self.tape (Record [SET cell x] cell [x] c))))

  (defn note-optimizer [self value name params scope]
    "The names of the trainable variables an optimizer steps (all made so far when it is
    given none) and whether its step can be applied during the backward pass."
    (setv (get value.info "params")
          (if (is params None)
            (list self.trainables)
            (lfor p params
                  :setv v (self.atom p scope)
                  :if (isinstance (.get v.info "param") str)
                  (get v.info "param")))
          (get value.info "entry") (get OPTIMIZERS (str name))))

  (defn nested-block [self node scope]
    "A block of a staged `if`, a `while`'s test or a loop that is not differentiated: its
    ops stay on the tape, for a backward pass inside it; it may not set a cell outside it to
    a tensor that needs gradients when the program has a backward pass."
    (setv mark (len self.tape)
          value (.nested-block (super) node scope))
    (when self.has-backward
      (for [r (cut self.tape mark None)]
        (when (and (= (get r.node 0) "set") (is (self.lookup r.out scope) r.binding))
          (raise (IRError (+ "a variable that carries a tensor needing gradients is set "
                             "inside a staged `if` or data-loader loop and used after it: "
                             "gradients through that are not supported yet (a staged "
                             "`while` or `for` over a list is)"))))))
    value)

  ;; ------------------------------------------------------------ loops

  (defn while-node [self node test body scope key]
    (self.nested-block test scope)
    (setv loop (self.taped-loop body scope key))
    (if (is loop None)
      (self.nested-block body scope)
      (do (self.walk-body loop body)
          (.append self.tape (.record loop))
          (setv (cut node 0 None) [WHILE-TAPED loop.key test body])))
    (value-of "none"))

  (defn taped-loop [self body scope key]
    "The TapedLoop of a `while` body that carries a tensor needing gradients, in a program
    with a backward pass; else None."
    (when (or (not self.has-backward)
              (not (and (isinstance body list) (= (len body) 2) (= (get body 0) "begin"))))
      (return None))
    (setv cells [] inputs [])
    (for [sym (free-syms body)]
      (setv v (self.lookup sym scope))
      (cond
        (= v.type "cell")
          (when (self.requires-grad v)
            (.append cells [sym v (. (self.cell-kind v) ttype)]))
        (and (= v.type "tensor") (.get v.info "requires-grad") (is (.get v.info "param") None))
          (.append inputs [sym v])))
    (when (not cells)
      (return None))
    (when (uses-backward body)
      (raise (IRError (+ "a backward pass inside a staged loop reaches a tensor carried from "
                         "the previous iteration: PyTorch would differentiate through the "
                         "earlier iterations too (or fail once their graph is freed); call "
                         "backward after the loop"))))
    (setv random (lfor name (calls-of body) :if (and (in name OPS) (. (get OPS name) random)) name))
    (when random
      (raise (IRError (+ f"{(get random 0)} draws random numbers inside a staged loop that "
                         "is differentiated: not supported yet (its backward pass runs the "
                         "loop again)"))))
    (setv key (if (is key None) self.next-loop key)
          self.next-loop (max self.next-loop (+ key 1)))
    (TapedLoop key scope cells inputs))

  (defn walk-body [self loop body]
    "Walk the loop's body, its ops on a tape of its own (its backward starts from its end)."
    (setv mark (len self.tape)
          inner (.child loop.scope))
    (+= self.nested 1)
    (try
      (self.chain (get body 1) inner)
      (finally (-= self.nested 1)))
    (setv loop.tape (cut self.tape mark None)
          loop.body-scope inner)
    (del (cut self.tape mark None)))

  ;; ------------------------------------------------------------ backward passes

  (defn backward [self node loss optimizer scope]
    "Write the backward pass of `loss` into `node` (unless it holds one already, read back)."
    (setv lv (self.atom loss scope))
    (when (is lv.type None)
      (return))   ; (the renderer says what is wrong with it)
    (when (!= lv.type "tensor")
      (raise (IRError (if (isinstance loss Sym)
                        f"backward needs a tensor, but `{loss}` is a {lv.type}"
                        f"backward needs a tensor, got {(print-ir loss)}"))))
    (setv t (get lv.info "ttype"))
    (when (or (!= t.shape #()) (!= t.dtype "float32"))
      (raise (IRError f"backward needs a scalar float32 loss, `{loss}` is {(shapes.show t)}")))
    (when (not (.get lv.info "requires-grad"))
      (raise (IRError f"`{loss}` does not depend on any trainable variable")))
    (setv fused (if optimizer (self.fusable-params optimizer scope) {})
          [lets _] (backward-lets self.tape loss #* (self.queries scope) fused
                                  (fn [loop seeds outs] (self.bptt-node loop seeds outs scope))))
    (.append node [BEGIN (chain-of lets None)]))

  (defn fusable-params [self o scope]
    "{trainable variable: O} for optimizer O whose step a backward pass may apply."
    (setv v (self.atom o scope))
    (when (!= v.type "optimizer")
      (raise (IRError f"`{o}` is a {v.type}, not an optimizer")))
    (setv entry (get v.info "entry"))
    (when (not entry.fusable)
      (raise (IRError (+ f"backward_and_step: {entry.name}'s step cannot be applied during "
                         "the backward pass"))))
    (dfor p (get v.info "params") p o))

  (defn queries [self scope]
    "What grad.hy asks of the names seen from `scope`: #(fresh live requires-grad trainable)."
    (defn fresh []
      ;; a name the program has not bound here, so that no gradient hides one of its values
      (while True
        (setv sym (Sym f"g{self.next-gradient}"))
        (+= self.next-gradient 1)
        (when (not (bound? sym scope)) (return sym))))
    (defn info [name] (. (self.lookup name scope) info))
    #(fresh
      (fn [name binding] (is (self.lookup name scope) binding))
      (fn [name] (self.requires-grad (self.lookup name scope)))
      (fn [name] (is-not (.get (info name) "param") None))))

  (defn cell-kind [self v]
    "The kind of cell `v` (a TensorCellKind, a number's kind, or None: never set)."
    (get self.cells (get v.info "number")))

  (defn requires-grad [self v]
    "Whether value `v` is, depends on or (a cell) holds a trainable variable."
    (if (= v.type "cell")
      (do (setv kind (self.cell-kind v))
          (and (isinstance kind TensorCellKind) kind.requires-grad))
      (.get v.info "requires-grad" False)))

  (defn bptt-node [self loop seeds outs scope]
    "The `bptt` node of `loop` for a backward pass in `scope` (see the module's docstring)."
    (when (not (.inside scope loop.scope))
      (raise (IRError (+ "the backward pass is outside the block of a staged loop it "
                         "differentiates (the loop is inside an `if` or another loop's body): "
                         "not supported yet"))))
    (when (any (gfor r loop.tape (= (get r.node 0) "loop")))
      (raise (IRError (+ "gradients through a staged loop inside another staged loop that "
                         "carries a tensor needing gradients are not supported yet"))))
    (setv grads (.child loop.body-scope)
          [fresh #* rest] (self.queries grads)
          iters [])
    (for [[_ _ t] loop.cells]
      (setv sym (fresh))
      (.bind grads sym (value-of "tensor" :ttype t :requires-grad False))
      (.append iters sym))
    (setv [lets finals] (backward-from-seeds loop.tape
                                             (dfor [[cell _ _] sym] (zip loop.cells iters) (str cell) sym)
                                             fresh #* rest
                                             (fn [inner seeds outs] (self.bptt-node inner seeds outs grads)))
          n (len loop.cells))
    [BPTT loop.key
     (lfor [[cell _ _] seed iter out] (zip loop.cells seeds iters (cut outs n))
           [cell seed iter out (.get finals (str cell))])
     (lfor [[x _] out] (zip loop.inputs (cut outs n None))
           [x out (.get finals (str x))])
     [BEGIN (chain-of lets None)]]))


(defn differentiate [typing arg-kinds [loader-dims None]]
  "infer.hy's Typing of a program with its backward passes written in (see the docstring)."
  (.run (Differentiation typing arg-kinds loader-dims)))
