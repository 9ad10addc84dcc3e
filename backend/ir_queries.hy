"Questions asked of IR nodes by more than one stage: the symbols a node reads from outside,
the ops it calls, whether it has a backward pass.

  (free-syms (parse-ir \"(let a (+ b 1) (* a c))\"))   ; => [+ b * c]"

(import hytorch.ir.syntax [Sym])


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
      (and (isinstance n list) n (= (get n 0) "for_dataloader_pipelined") (= (len n) 5)
           (isinstance (get n 2) list) (isinstance (get n 3) list) (= (len (get n 3)) 2))
        ;; (its first layer's D is bound in the body, its weight W read from outside)
        (.extend stack [#((get n 4) (| bound (frozenset (gfor s (get n 2) (str s)))))
                        #((get (get n 3) 1) bound)
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

