"Backpropagation through staged loops whose trip count is known only at run time: rendering
the `while_taped` and `bptt` nodes of the autodiff pass (autodiff.hy). A mixin of CRenderer
(c_render.hy).

`(while_taped K TEST BODY)` is a `while` that saves, at the start of each iteration, the values
of the cells its body reads from outside (the hidden state, the loop counter) on a tape that
grows as the loop runs (ht_tape.h).

`(bptt K ((CELL SEED ITER OUT FINAL) ...) ((INPUT OUT FINAL) ...) (begin LETS))`, inside a
backward pass, runs loop K's iterations again, last to first: each restores the saved values,
renders the body's forward again (a replay: printing nothing), binds each ITER to its cell's
gradient carried from the later iteration and renders LETS, the body's backward; the FINALs
are the cells' gradients at the iteration's start (carried on) and the outer tensors' (added
up). OUT names the results: the cells' gradients when the loop began and the outer tensors'
sums. Recomputing the body costs one more forward per step; it saves only the loop's state,
not every activation."

(import hytorch.backend.c-out [Out c-comment indent C-TYPES]
        hytorch.backend.scope [Binding]
        hytorch.backend.c-tensor [ELEMENT-BYTES]
        hytorch.backend.kinds [TensorCellKind]
        hytorch.backend.ir-queries [free-syms]
        hytorch.ir.syntax [print-ir]
        hytorch.errors [IRError])


(defclass Loop []
  "A taped loop: its body, the scope it was rendered in, the cells its body reads from
  outside (saved each iteration, `saved`: [[binding bytes] ...]) and the tape field."
  (defn __init__ [self body scope saved tape]
    (setv self.body body self.scope scope self.saved saved self.tape tape))

  (defn [property] stride [self]
    "C expression of the bytes saved per iteration."
    (.join " + " (lfor [_ bytes] self.saved bytes))))


(defclass LoopGradRendering []
  "Taped loops and their backward; expects CRenderer's and TensorRendering's helpers and
  self.loops ({K: Loop})."

  (defn taped-loop [self key body scope]
    "The Loop of `(while_taped K TEST BODY)`: the cells BODY reads from outside, saved."
    (when (in key self.loops)
      (raise (IRError f"two loops are taped as loop {key}")))
    (setv saved [])
    (for [sym (free-syms body)]
      (setv b (try (.lookup scope sym) (except [IRError] None)))
      (when (and b (= b.type "cell"))
        (setv kind (self.cell-kind b))
        (.append saved [b (if (isinstance kind TensorCellKind)
                            (self.static-bytes kind.ttype)
                            f"sizeof({(get C-TYPES (or kind "int"))})")])))
    (setv [expr _] (self.state.field "loop_tape" "ht_tape" "values saved by a differentiable loop"))
    (self.state.on-free f"ht_tape_free(&{expr});")
    (setv loop (Loop body scope saved expr)
          (get self.loops key) loop)
    loop)

  (defn cell-address [self b]
    "C address of cell binding `b`'s value: a tensor cell is its storage."
    (if (isinstance (self.cell-kind b) TensorCellKind)
      b.cname
      f"&{b.cname}"))

  (defn loop-save-lines [self loop]
    "C at the start of each iteration: push the values the body reads from outside."
    (lfor [b bytes] loop.saved
          f"if (ht_tape_push(&{loop.tape}, {(self.cell-address b)}, {bytes}) != HT_OK) return HT_ERROR;"))

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

  (defn bptt-node [self key cells inputs block scope]
    "`(bptt K ((CELL SEED ITER OUT FINAL) ...) ((INPUT OUT FINAL) ...) (begin LETS))`: the
    backward pass of taped loop K (see the module's docstring); binds the OUTs in `scope`."
    (setv loop (get self.loops key)
          lines [(c-comment "backpropagation through a staged loop, its iterations last to first")])
    (when (not (.inside scope loop.scope))   ; (the pass never writes one; IR read back may)
      (raise (IRError f"bptt: loop {key}'s values are not in scope here")))
    (setv carried [] summed [])
    ;; the cells' gradients, carried from iteration to iteration; the outer tensors' sums
    (for [entry cells]
      (setv [cell seed iter out final] (self.bptt-entry entry 5)
            b (self.cell-of cell loop.scope)
            kind (self.cell-kind b))
      (when (not (isinstance kind TensorCellKind))
        (raise (IRError f"bptt: `{cell}` is not a cell that holds tensors")))
      (setv [alloc g] (self.alloc f"{cell}_grad" kind.ttype))
      (.extend lines [#* alloc (self.copy-or-zero g (when seed (. (self.tensor seed scope "bptt") cname))
                                                  kind.ttype)])
      (.append carried [cell g kind.ttype iter out final]))
    (for [entry inputs]
      (setv [x out final] (self.bptt-entry entry 3)
            t (self.ttype (self.tensor x loop.scope "bptt"))
            [alloc g] (self.alloc f"{x}_grad" t))
      (.extend lines [#* alloc (self.copy-or-zero g None t)])
      (.append summed [x g t None out final]))
    (setv now (self.names.fresh "loop_now")
          t (self.names.fresh "iteration")
          mark (self.names.fresh "arena_mark")
          [replay grads-lines finals] (self.replay loop carried summed block))
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
    (for [[_ g t _ out _] [#* carried #* summed]]
      (.bind scope out (Binding g "tensor" :ttype t :requires-grad False)))
    (Out lines None "none"))

  (defn bptt-entry [self entry size]
    (when (not (and (isinstance entry list) (= (len entry) size)))
      (raise (IRError f"bptt: a loop's entry has {size} parts, not {(print-ir entry)}")))
    entry)

  (defn replay [self loop carried summed block]
    "The body's forward again, then its backward LETS from the carried gradients:
    #(forward lines, backward lines, {FINAL: its C name})."
    (setv body-scope (.child loop.scope))
    (+= self.replaying 1)
    (+= self.nested 1)
    (try
      (setv [forward _ _] (self.chain (get loop.body 1) body-scope))
      (finally
        (-= self.replaying 1)
        (-= self.nested 1)))
    (setv grads-scope (.child body-scope))
    (for [[_ g t iter _ _] carried]
      (.bind grads-scope iter (Binding g "tensor" :ttype t :requires-grad False)))
    (setv lines (self.render-block-lets block grads-scope))
    #(forward lines
      (dfor [_ _ _ _ _ final] (+ carried summed) :if (is-not final None)
            (str final) (. (self.tensor final grads-scope "bptt") cname))))

  (defn carry-lines [self carried summed finals]
    "C after one iteration's backward: the outer tensors' gradients added up, then the cells'
    gradients at its start carried to the next (earlier) iteration. A cell's gradient may be
    another cell's carried buffer (a cell set to another's value hands its seed on): all are
    copied out before any buffer is overwritten."
    (setv lines (lfor [_ g t _ _ final] summed
                      :if (is-not final None)
                      f"for (int64_t i = 0; i < {(self.numel t)}; i++) {g}[i] += {(get finals (str final))}[i];")
          staged [])
    (for [[sym g t _ _ final] carried]
      (if (is final None)
        (.append staged [g None t])
        (do (setv [alloc copy] (self.alloc f"{sym}_next_grad" t))
            (.extend lines [#* alloc (self.copy-or-zero copy (get finals (str final)) t)])
            (.append staged [g copy t]))))
    (+ lines (lfor [g copy t] staged (self.copy-or-zero g copy t))))

  (defn copy-or-zero [self to from t]
    "C setting the tensor of type `t` at `to` to the one at `from`, or to zeros (None)."
    (if (is from None)
      f"memset({to}, 0, {(self.tensor-bytes t)});"
      f"memcpy({to}, {from}, {(self.tensor-bytes t)});")))
