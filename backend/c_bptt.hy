"Backpropagation through staged loops whose trip count is known only at run time. A mixin of
CRenderer (c_render.hy).

A `while` whose body reads a cell holding a tensor that needs gradients (an RNN's hidden
state: `(set h (call sigmoid (...)))` in the body) is differentiable when the program has a
backward pass. Its forward loop then saves, at the start of each iteration, the values of the
cells its body reads from outside (the hidden state, the loop counter) on a tape that grows
as the loop runs (ht_tape.h), and the loop goes on the renderer's tape as one record whose
inputs and outputs are its tensor cells (and the outer tensors it reads that need gradients).

The backward pass meets that record as `(bptt K (SEEDS...) (OUTS...))`: SEEDS are the
gradients of the cells when the loop ended. Rendering it runs the iterations again, last to
first: each restores the saved values, renders the body's forward again (a replay: printing
nothing) and then the body's backward from the cells' gradients (grad.hy's
backward-from-seeds), which gives the cells' gradients at the iteration's start and adds to
the trainable variables' gradients. OUTS are bound to the cells' gradients when the loop
began and to the outer tensors' summed gradients: the rest of the backward pass goes on from
there. Recomputing the body costs one more forward per step; it saves only the loop's state,
not every activation."

(import hytorch.backend.c-out [Out c-comment indent C-TYPES]
        hytorch.backend.scope [Binding]
        hytorch.backend.c-tensor [ELEMENT-BYTES]
        hytorch.backend.grad [Record backward-from-seeds]
        hytorch.backend.kinds [TensorCellKind]
        hytorch.ir.syntax [Sym]
        hytorch.ir.ops [OPS]
        hytorch.errors [IRError])



(defn free-syms [node]
  "The symbols `node` reads that no let (or loop) inside it binds, each once, in a fixed
  order: (free-syms (parse '(let a (+ b 1) (* a c)))) => [+ b * c] (callers look them up).
  Iterative: a program's lets nest as deep as it is long."
  (setv out [] seen (set) stack [#(node (frozenset))])
  (while stack
    (setv [n bound] (.pop stack))
    (cond
      (isinstance n Sym)
        (when (and (not-in (str n) bound) (not-in (str n) seen))
          (.add seen (str n))
          (.append out n))
      (and (isinstance n list) n (= (get n 0) "let") (= (len n) 4))
        (.extend stack [#((get n 3) (| bound #{(str (get n 1))})) #((get n 2) bound)])
      (and (isinstance n list) n (= (get n 0) "for_dataloader") (= (len n) 4)
           (isinstance (get n 2) list))
        (.extend stack [#((get n 3) (| bound (frozenset (gfor s (get n 2) (str s)))))
                        #((get n 1) bound)])
      (isinstance n list)
        (.extend stack (gfor x (reversed n) #(x bound)))))
  out)


(defn sub-nodes [node]
  "Every list inside `node`, `node` included (iteratively)."
  (setv stack [node])
  (while stack
    (setv n (.pop stack))
    (when (isinstance n list)
      (yield n)
      (.extend stack n))))


(defn calls-of [node]
  "The names of the ops `node` calls: `(call NAME (...))` anywhere inside it."
  (sfor n (sub-nodes node)
        :if (and (= (len n) 3) (= (get n 0) "call") (isinstance (get n 1) Sym)
                 (isinstance (get n 2) list))
        (str (get n 1))))


(defn uses-backward [node]
  "Whether `node` has a backward pass anywhere inside it."
  (any (gfor n (sub-nodes node)
             (and (>= (len n) 3) (= (get n 0) "call") (in (get n 2) #("backward" "backward_and_step"))))))


(defclass Loop []
  "A differentiable loop: its body, the scope it was rendered in, the cells its body reads
  from outside (saved each iteration, `saved`: [[binding bytes] ...]), which of them carry
  gradients (`cells`: [[sym binding ttype] ...]), the outer tensors it reads that need
  gradients (`inputs`: [[sym binding] ...]) and the tape field."
  (defn __init__ [self body scope saved cells inputs tape]
    (setv self.body body self.scope scope self.saved saved self.cells cells
          self.inputs inputs self.tape tape))

  (defn [property] stride [self]
    "C expression of the bytes saved per iteration."
    (.join " + " (lfor [_ bytes] self.saved bytes))))


(defclass LoopGradRendering []
  "Differentiable loops; expects CRenderer's and TensorRendering's helpers and self.loops."

  (defn differentiable-loop [self body scope]
    "The Loop of a `while` body if the program differentiates through it, else None."
    (when (not self.has-backward)
      (return None))
    (setv cells [] inputs [] saved [])
    (for [sym (free-syms body)]
      (setv b (try (.lookup scope sym) (except [IRError] None)))
      (cond
        (is b None) None
        (= b.type "cell")
          (do (setv kind (self.cell-kind b))
              (if (isinstance kind TensorCellKind)
                (do (.append saved [b (self.static-bytes kind.ttype)])
                    (when kind.requires-grad
                      (.append cells [sym b kind.ttype])))
                (.append saved [b f"sizeof({(get C-TYPES (or kind "int"))})"])))
        (and (= b.type "tensor") (.get b.info "requires-grad")
             (is (.get b.info "param") None))
          (.append inputs [sym b])))
    (when (not cells)
      (return None))
    (when (uses-backward body)
      (raise (IRError (+ "a backward pass inside a staged loop reaches a tensor carried from "
                         "the previous iteration: PyTorch would differentiate through the "
                         "earlier iterations too (or fail once their graph is freed); call "
                         "backward after the loop"))))
    (when self.replaying
      (raise (IRError (+ "gradients through a staged loop inside another staged loop that "
                         "carries a tensor needing gradients are not supported yet"))))
    (setv random (lfor name (calls-of body) :if (and (in name OPS) (. (get OPS name) random)) name))
    (when random
      (raise (IRError (+ f"{(get random 0)} draws random numbers inside a staged loop that "
                         "is differentiated: not supported yet (its backward pass runs the "
                         "loop again)"))))
    (setv [expr field] (self.state.field "loop_tape" "ht_tape"
                                         "values saved by a differentiable loop"))
    (self.state.on-free f"ht_tape_free(&{expr});")
    (Loop body scope saved cells inputs expr))

  (defn cell-address [self b]
    "C address of cell binding `b`'s value: a tensor cell is its storage."
    (if (isinstance (self.cell-kind b) TensorCellKind)
      b.cname
      f"&{b.cname}"))

  (defn loop-save-lines [self loop]
    "C at the start of each iteration: push the values the body reads from outside."
    (lfor [b bytes] loop.saved
          f"if (ht_tape_push(&{loop.tape}, {(self.cell-address b)}, {bytes}) != HT_OK) return HT_ERROR;"))

  (defn record-loop [self loop]
    "Put the loop on the tape: its tensor cells in and out, the outer tensors in."
    (setv key (len self.loops))
    (.append self.loops loop)
    (.append self.tape
             (Record [(Sym "loop") key] (get loop.cells 0 0)
                     [#* (lfor [s _ _] loop.cells s) #* (lfor [s _] loop.inputs s)]
                     (get loop.cells 0 1)
                     :outs (lfor [s b _] loop.cells [s b]))))

  (defn copy-lines [self loop saved direction]
    "C copying the values of the cells the loop saves to the bytes at `saved` (`direction`
    \"save\") or back from them (\"restore\"), in the order ht_tape_push saves them."
    (setv lines [] offset "0")
    (for [[b bytes] loop.saved]
      (setv cell (self.cell-address b)
            [to from] (if (= direction "save") [f"{saved} + {offset}" cell] [cell f"{saved} + {offset}"]))
      (.append lines f"memcpy({to}, {from}, {bytes});")
      (setv offset f"{offset} + {bytes}"))
    lines)

  (defn static-bytes [self t]
    "The bytes of a tensor of type `t` at its largest (a whole batch), a C constant."
    (str (* (max t.numel 1) (get ELEMENT-BYTES t.dtype))))

  (defn in-scope-of [self scope ancestor]
    (while (is-not scope None)
      (when (is scope ancestor) (return True))
      (setv scope scope.parent))
    False)

  (defn bptt-node [self key seeds outs scope]
    "`(bptt K (SEEDS...) (OUTS...))`: the backward pass of differentiable loop K (see the
    module's docstring); binds OUTS in `scope`."
    (setv loop (get self.loops key))
    (when (not (self.in-scope-of scope loop.scope))
      (raise (IRError (+ "the backward pass is outside the block of a staged loop it "
                         "differentiates (the loop is inside an `if` or another loop's body): "
                         "not supported yet"))))
    (setv lines [(c-comment "backpropagation through a staged loop, its iterations last to first")]
          carried [] summed [])
    ;; the cells' gradients, carried from iteration to iteration; the outer tensors' sums
    (for [[[sym b t] seed] (zip loop.cells seeds)]
      (setv [alloc g] (self.alloc f"{sym}_grad" t))
      (.extend lines [#* alloc (self.copy-or-zero g (when seed (. (.lookup scope seed) cname)) t)])
      (.append carried [sym g t]))
    (for [[sym b] loop.inputs]
      (setv t (self.ttype b)
            [alloc g] (self.alloc f"{sym}_grad" t))
      (.extend lines [#* alloc (self.copy-or-zero g None t)])
      (.append summed [sym g t]))
    (setv now (self.names.fresh "loop_now")
          t (self.names.fresh "iteration")
          mark (self.names.fresh "arena_mark")
          [replay grads-lines finals] (self.replay loop carried))
    (.extend lines
      [f"char *{now} = ht_arena_alloc(&ht_s->arena, {loop.stride});"
       #* (self.copy-lines loop now "save")
       f"for (int64_t {t} = (int64_t)({loop.tape}.used / ({loop.stride})) - 1; {t} >= 0; {t}--) {{"
       "  if (ht_interrupted) return ht_interrupt_status();"
       f"  size_t {mark} = ht_s->arena.top;"
       #* (indent (self.copy-lines loop f"{loop.tape}.data + {t} * ({loop.stride})" "restore"))
       #* (indent replay)
       #* (indent grads-lines)
       #* (indent (self.carry-lines carried summed finals))
       f"  ht_s->arena.top = {mark};"
       "}"
       #* (self.copy-lines loop now "restore")])
    (self.state.arena-workspace f"({loop.stride})")   ; loop_now
    (for [[out [_ g t]] (zip outs [#* carried #* summed])]
      (.bind scope out (Binding g "tensor" :ttype t :requires-grad False)))
    (Out lines None "none"))

  (defn replay [self loop carried]
    "The body's forward again, then its backward from the carried gradients:
    #(forward lines, backward lines, {name: gradient binding} at the iteration's start)."
    (setv saved-tape self.tape
          self.tape []
          body-scope (.child loop.scope)
          chain (get loop.body 1))
    (+= self.replaying 1)
    (+= self.nested 1)
    (try
      (setv [forward _ _] (self.chain chain body-scope))
      (finally
        (-= self.replaying 1)
        (-= self.nested 1)))
    (setv body-tape self.tape
          self.tape saved-tape
          grads-scope (.child body-scope)
          seeds {})
    (for [[sym g t] carried]
      (setv seed (Sym f"{sym}_seed"))
      (.bind grads-scope seed (Binding g "tensor" :ttype t :requires-grad False))
      (setv (get seeds (str sym)) seed))
    (setv [lets grads] (backward-from-seeds body-tape seeds #* (self.gradient-queries grads-scope)))
    #(forward (self.render-lets lets grads-scope)
      (dfor [name g] (.items grads) name (.lookup grads-scope g))))

  (defn carry-lines [self carried summed finals]
    "C after one iteration's backward: the outer tensors' gradients added up, then the cells'
    gradients at its start carried to the next (earlier) iteration. A cell's gradient may be
    another cell's carried buffer (a cell set to another's value hands its seed on): all are
    copied out before any buffer is overwritten."
    (setv lines (lfor [sym g t] summed
                      :setv final (.get finals (str sym))
                      :if (is-not final None)
                      f"for (int64_t i = 0; i < {(self.numel t)}; i++) {g}[i] += {final.cname}[i];")
          staged [])
    (for [[sym g t] carried]
      (setv final (.get finals (str sym)))
      (if (is final None)
        (.append staged [g None t])
        (do (setv [alloc copy] (self.alloc f"{sym}_next_grad" t))
            (.extend lines [#* alloc (self.copy-or-zero copy final.cname t)])
            (.append staged [g copy t]))))
    (+ lines (lfor [g copy t] staged (self.copy-or-zero g copy t))))

  (defn copy-or-zero [self to from t]
    "C setting the tensor of type `t` at `to` to the one at `from`, or to zeros (None)."
    (if (is from None)
      f"memset({to}, 0, {(self.tensor-bytes t)});"
      f"memcpy({to}, {from}, {(self.tensor-bytes t)});")))
