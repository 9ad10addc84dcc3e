"The state of a generated module: the fields of its `ht_state` struct, the C that makes them
(`ht_new`) and frees them (`ht_delete`), the slots it shows Python (`ht_slot`), and the size of
the arena its temporaries are carved from.

  (setv s (ModuleState (CNames)))
  (s.buffer \"w\" \"float *\" 24 \"a weight\")     ; => \"ht_s->v_w\"
  (s.slot \"ht_s->v_w\" SlotRole.TENSOR :sym \"w\" :numel 6 :dtype \"float32\" :shape [6])
  (s.c-definitions \"0x1ull\")   ; => the struct, ht_delete, ht_new, ht_slot and ht_bind_slot

The renderer asks for what a node needs while it renders the node; the module's C is
written from here once the program has been rendered."

(import math
        hytorch.backend.c-out [indent c-comment]
        hytorch.errors [IRError]
        hytorch.ir.slots [SlotRole]
        hytorch.ir.types [MAX-BYTES])


(defclass ModuleState []
  "Everything a rendered program keeps between calls. `names` hands out the fields' names
  (the program's CNames, so that no field clashes with one of its variables)."

  (defn __init__ [self names]
    (setv self.names names
          self.fields []        ; declarations inside `struct ht_state`
          self.init-lines []    ; C of ht_new, in order; `goto fail` on a failed allocation
          self.free-lines []    ; C of ht_delete (every pointer may still be NULL there)
          self.slots []         ; {"expr" C address, "role" SlotRole, facts...}
          self.arena-bytes 0    ; of the tensors carved from the arena, each 64-byte aligned
          self.arena-extra []))  ; C expressions of workspaces whose size C computes

  (defn field [self name decl-type [comment None]]
    "A new field of type `decl-type`: #(its C expression, its field name)."
    (setv field (self.names.fresh name))
    (.append self.fields (+ f"{decl-type} {field};" (if comment (+ " " (c-comment comment)) "")))
    #(f"ht_s->{field}" field))

  (defn buffer [self name decl-type bytes [comment None]]
    "A field pointing to `bytes` of heap memory allocated by ht_new and freed by ht_delete:
    its C expression."
    (setv [expr _] (self.field name decl-type comment))
    (self.allocate expr bytes)
    expr)

  (defn allocate [self expr bytes]
    "Allocate `bytes` for the pointer field `expr` when the state is made; free it with it."
    (self.on-init f"if (!({expr} = ht_alloc({bytes}))) goto fail;")
    (self.on-free f"ht_free({expr});"))

  (defn on-init [self #* lines] (.extend self.init-lines lines))
  (defn on-free [self #* lines] (.extend self.free-lines lines))

  (defn slot [self expr role #** facts]
    "Show the buffer at C address `expr` to Python as the next slot: its index."
    (.append self.slots {"expr" expr "role" (SlotRole role) #** facts})
    (- (len self.slots) 1))

  (defn has-slot [self role]
    (any (gfor s self.slots (= (get s "role") role))))

  (defn slot-descriptions [self]
    "What Python is told of each slot: its role and facts (not its C address)."
    (lfor s self.slots (dfor [k v] (.items s) :if (!= k "expr") k v)))

  (defn arena-tensor [self bytes]
    "Room in the arena for a tensor of `bytes` (64-byte aligned)."
    (+= self.arena-bytes (* 64 (math.ceil (/ bytes 64)))))

  (defn arena-workspace [self bytes]
    "Room in the arena for a workspace of C expression `bytes` bytes (aligned by the arena)."
    (.append self.arena-extra f"{bytes} + 64"))

  (defn arena-size [self]
    (when (> self.arena-bytes MAX-BYTES)
      (raise (IRError (+ f"the program's intermediate tensors would take {self.arena-bytes} "
                         f"bytes, more than the {MAX-BYTES} a program may"))))
    (.join " + " [(str (max self.arena-bytes 64)) #* self.arena-extra]))

  (defn bindable-slots [self]
    "The slots of top-level tensors, which Python may point at memory of its own for a call
    (ht_bind_slot): #(slot index, C expression) pairs."
    (lfor [i s] (enumerate self.slots) :if (= (get s "role") SlotRole.TENSOR) #(i (get s "expr"))))

  (defn c-definitions [self init-seed]
    "The C of the state: its struct, ht_delete, ht_new (whose uniform initialisation of unbound
    tensors draws from `init-seed`), ht_slot and ht_bind_slot."
    (setv bindable (self.bindable-slots)
          bindable-index (dfor [k [i _]] (enumerate bindable) i k))
    ["typedef struct ht_state {"
     "  ht_arena arena;"
     "  int64_t call_depth; /* of staged functions, bounded so recursion cannot overflow the C stack */"
     #* (if bindable
          [f"  void *ht_owned[{(len bindable)}]; /* each bindable slot's own memory */"]
          [])
     #* (indent self.fields)
     "} ht_state;"
     ""
     "HT_EXPORT void ht_delete(ht_state *ht_s) {"
     "  if (!ht_s) return;"
     #* (lfor [k [_ expr]] (enumerate bindable)
          f"  if (ht_s->ht_owned[{k}]) {expr} = ht_s->ht_owned[{k}];")
     #* (indent self.free-lines)
     "  ht_arena_free(&ht_s->arena);"
     "  ht_free(ht_s);"
     "}"
     ""
     "HT_EXPORT ht_state *ht_new(void) {"
     "  ht_state *ht_s = ht_alloc(sizeof(ht_state));"
     "  if (!ht_s) return NULL;"
     f"  uint64_t rng = {init-seed};"
     "  (void)rng;"
     f"  if (ht_arena_init(&ht_s->arena, {(self.arena-size)}) != HT_OK) goto fail;"
     #* (indent self.init-lines)
     #* (lfor [k [_ expr]] (enumerate bindable) f"  ht_s->ht_owned[{k}] = {expr};")
     "  return ht_s;"
     "fail:"
     "  ht_delete(ht_s);"
     "  return NULL;"
     "}"
     ""
     "HT_EXPORT void *ht_slot(ht_state *ht_s, int i) {"
     "  switch (i) {"
     #* (lfor [i s] (enumerate self.slots)
          (if (in i bindable-index)   ; (its own memory even while bound: see ht_bind_slot)
            (let [own f"ht_s->ht_owned[{(get bindable-index i)}]"]
              f"  case {i}: return {own} ? {own} : {(get s "expr")};")
            f"  case {i}: return {(get s "expr")};"))
     "  }"
     "  return NULL;"
     "}"
     ""
     "/* Point bindable slot i at p for the calls to come (NULL: back at the state's own memory);"
     "   -1 for another slot. ht_slot still gives the state's own memory. */"
     "HT_EXPORT int ht_bind_slot(ht_state *ht_s, int i, void *p) {"
     "  switch (i) {"
     #* (lfor [k [i expr]] (enumerate bindable)
          f"  case {i}: {expr} = p ? p : ht_s->ht_owned[{k}]; return 0;")
     "  }"
     "  (void)ht_s, (void)p;"
     "  return -1;"
     "}"
     ""]))
