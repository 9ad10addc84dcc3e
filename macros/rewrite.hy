"The defstaged rewrite: a function body, macro-expanded, with its control flow turned into
calls to `hytorch.control` (imported as `_hyt`) that run at generation time or emit IR.
The names the rewrite introduces (`_hyt`, `_hyt_frame_0`, ...) start with a prefix that no
symbol of the function starts with (`_hyt`, else `_hyt_`, `_hyt__`, ...), so any name a user
writes keeps its meaning.

  (while (< i n) (setv i (+ i 1)))
  ;; becomes
  (_hyt.stage-while _hyt_frame (fn [] (< i n)) (fn [] (nonlocal i) (setv i (.assign _hyt_frame \"i\" (+ i 1))))
                    (_hyt.Vars [\"i\"] (fn [] [i]) (fn [v] (nonlocal i) (setv [i] v))) [\"i\"] [\"i\"] \"f.hy:3:5\"
                    None [])"

(import ast
        hy
        hy.core.result-macros [_hy-macros :as SPECIAL-FORMS]
        hy.models [Expression Symbol List Tuple Set Dict Keyword String]
        hy.scoping [ResolveOuterVars]
        hytorch.staged-function [deeper-recursion])

(setv _OPAQUE #{"quote" "quasiquote" "import" "require" "defmacro" "defreader" "eval-when-compile"
                "eval-and-compile" "py" "pys" "pragma" "global" "nonlocal" "defclass" "del"})
(setv _OWN-SCOPE #{"fn" "defn" "defclass" "lfor" "sfor" "gfor" "dfor" "quote" "quasiquote"})
(setv _AUGMENTED {"+=" "+"  "-=" "-"  "*=" "*"  "/=" "/"  "//=" "//"  "%=" "%"  "**=" "**"
                  "@=" "@"  "&=" "&"  "|=" "|"  "^=" "^"  "<<=" "<<"  ">>=" ">>"})
(setv _CHAINABLE #{"<" "<=" ">" ">=" "=" "!="})
(setv _UNSUPPORTED #{"yield" "yield-from" "await"})
;; Special forms whose compilation does something at once (so `expand-all` compiles them).
(setv _COMPILE-TIME #{"require" "defmacro" "defreader" "eval-when-compile" "eval-and-compile"
                      "pragma"})
(setv _TRY-CLAUSES #{"except" "except*" "else" "finally"})


(defn _head [form]
  "The head symbol's name of an expression (\".NAME\" for a method call), or None."
  (when (and (isinstance form Expression) form)
    (setv head (get form 0))
    (cond (isinstance head Symbol) (str head)
          ;; Hy reads (.format s x) as ((. None format) s x).
          (and (isinstance head Expression) (= (len head) 3) (= (get head 0) (Symbol "."))
               (= (get head 1) (Symbol "None")) (isinstance (get head 2) Symbol))
            (+ "." (str (get head 2))))))


(defn symbol-names [forms]
  "The mangled names of every symbol in `forms`, quoted code included:
  (symbol-names '[(setv a-b (f x))]) => #{\"setv\" \"a_b\" \"f\" \"x\"}"
  (setv out (set) stack (list forms))
  (while stack
    (setv form (.pop stack))
    (cond (isinstance form Symbol) (.add out (hy.mangle form))
          (isinstance form #(Expression List Tuple Set Dict)) (.extend stack form)))
  out)


(defn internal-prefix [forms]
  "The prefix of the names the rewrite introduces in `forms`: `_hyt` made longer with `_`
  until no symbol of `forms` starts with it. (internal-prefix '[(setv _hyt-frame 1)]) => \"_hyt__\""
  (setv names (symbol-names forms) prefix "_hyt")
  (while (any (gfor n names (.startswith n prefix)))
    (+= prefix "_"))
  prefix)


(defn _rebuild [original items]
  "A model of the same type as `original` holding `items`, at the same source position
  (`items` keep theirs: replacing recursively would rebuild the whole tree at each level)."
  (.replace ((type original) items) original :recursive False))


(defn _special-form? [form module]
  "Whether `form` calls one of Hy's special forms (`if`, `try`, `+`, `else`, ...): expanding
  one would compile it, subforms and all, and some (`else`) are errors out of place."
  (setv head (_head form))
  (and head
       (in (hy.mangle head) SPECIAL-FORMS)
       (not-in (hy.mangle head) (getattr module "_hy_macros" {}))
       (not-in head _COMPILE-TIME)))


(defn _expand-call [form module]
  "`form` with the macro it calls expanded, again and again, until it is not a macro call."
  (while (and (isinstance form Expression) form (not (_special-form? form module)))
    (setv expanded (hy.macroexpand-1 form module))
    (when (is expanded form)
      (break))
    (setv form (.replace (hy.as-model expanded) form)))
  form)


(defn expand-all [form module]
  "Expand every macro call in `form` (not inside quotes), keeping source positions."
  (setv form (_expand-call form module))
  (cond (in (_head form) #("quote" "quasiquote")) form
        (isinstance form #(Expression List Tuple Set Dict))
          (_rebuild form (lfor x form (expand-all x module)))
        True form))


;; ---------------------------------------------------------------- let

(setv _let-counter (hy.I.itertools.count))


(defn _rename-targets [target env taken]
  "`target` with each name it binds renamed afresh (recorded in `env`), to names not in
  `taken` (the mangled names already in use)."
  (cond (and (isinstance target Symbol) (not-in "." (str target)))
          (do (setv new (Symbol f"{target}_let{(next _let-counter)}"))
              (while (in (hy.mangle new) taken)
                (setv new (Symbol f"{target}_let{(next _let-counter)}")))
              (.add taken (hy.mangle new))
              (setv (get env (str target)) (str new))
              (.replace new target))
        (isinstance target #(List Tuple))
          (_rebuild target (lfor t target (_rename-targets t env taken)))
        (= (_head target) "unpack-iterable")
          (.replace `(unpack-iterable ~(_rename-targets (get target 1) env taken)) target)
        True target))


(defn lower-lets [form [env None] [taken None]]
  "Every `let` as plain assignments to fresh names, so a staged function has one scope:
  (let [x 1] (+ x y)) => (do (setv x_let0 1) (+ x_let0 y)). `taken` holds the mangled names
  the new ones must differ from (by default, the symbols of `form`)."
  (setv env (or env {})
        taken (if (is taken None) (symbol-names [form]) taken)
        head (_head form))
  (cond
    (isinstance form Symbol)
      (if (in (str form) env) (.replace (Symbol (get env (str form))) form) form)
    (in head #("quote" "quasiquote")) form
    (= head "let")
      (do (setv [_ bindings #* body] form
                inner (dict env)
                pairs [])
          (for [[target value] (zip (cut bindings 0 None 2) (cut bindings 1 None 2))]
            (setv value (lower-lets value inner taken))
            (.extend pairs [(_rename-targets target inner taken) value]))
          (.replace `(do (setv ~@pairs) ~@(lfor b body (lower-lets b inner taken))) form))
    (= head ".")
      ;; (. obj attr ...): only the object is a variable
      (_rebuild form [(get form 0) (lower-lets (get form 1) env taken) #* (cut form 2 None)])
    (and (in head #("fn" "defn")) (isinstance form Expression))
      (do (setv params (next (gfor x (cut form 1 None) :if (isinstance x List) x) None)
                shadowed (set (param-names (or params [])))
                inner (dfor [k v] (.items env) :if (not-in k shadowed) k v))
          (_rebuild form (lfor x form (lower-lets x inner taken))))
    (isinstance form #(Expression List Tuple Set Dict))
      (_rebuild form (lfor x form (lower-lets x env taken)))
    True form))


;; ---------------------------------------------------------------- analysis

(defn target-names [target]
  "Variable names a `setv` target binds: (target-names '[a [b c]]) => [\"a\" \"b\" \"c\"]"
  (cond (and (isinstance target Symbol) (not-in "." (str target))) [(str target)]
        (isinstance target #(List Tuple)) (sum (lfor t target (target-names t)) [])
        (= (_head target) "unpack-iterable") (target-names (get target 1))
        True []))


(defn _split-else [body]
  "A loop's `body` without its final `(else ...)` clause, and the clause's forms (or None)."
  (if (and body (= (_head (get body -1)) "else"))
    #((cut body 0 -1) (list (cut (get body -1) 1 None)))
    #(body None)))


(defn _unique [names]
  (list (dict.fromkeys names)))


(defn assigned-names [forms]
  "Names assigned by `forms`, outside nested function and class bodies, in order."
  (setv out [])
  (defn walk [form]
    (setv head (_head form))
    (cond
      (in head #("setv" "setx" "let"))
        (do (setv pairs (if (= head "let") (list (get form 1)) (list (cut form 1 None))))
            (for [[target value] (zip (cut pairs 0 None 2) (cut pairs 1 None 2))]
              (.extend out (target-names target))
              (walk value))
            (when (= head "let") (for [f (cut form 2 None)] (walk f))))
      (in head _AUGMENTED)
        (do (.extend out (target-names (get form 1)))
            (for [f (cut form 2 None)] (walk f)))
      (= head "for")
        (do (setv clauses (list (get form 1)))
            (for [[target value] (zip (cut clauses 0 None 2) (cut clauses 1 None 2))]
              (.extend out (target-names target))
              (walk value))
            (for [f (cut form 2 None)] (walk f)))
      (in head #("defn" "defclass"))
        (for [x (cut form 1 None)]
          (when (isinstance x Symbol) (.append out (str x)) (break)))
      (in head _OWN-SCOPE) None
      (in head _OPAQUE) None
      (isinstance form #(Expression List Tuple Set Dict))
        (for [f form] (walk f))))
  (for [f forms] (walk f))
  (_unique out))


(defn mentioned-names [forms]
  "Every name a symbol in `forms` refers to (the object of `x.attr` counts as `x`)."
  (setv out #{})
  (defn walk [form]
    (cond (isinstance form Symbol)
            (.add out (get (.split (str form) ".") 0))
          (isinstance form #(Expression List Tuple Set Dict))
            (for [f form] (walk f))))
  (for [f forms] (walk f))
  out)


(defn _declared [forms kind]
  "Names declared `global` or `nonlocal` (kind) at the top of a function body."
  (setv out #{})
  (for [f forms]
    (when (= (_head f) kind)
      (.update out (gfor s (cut f 1 None) (str s)))))
  out)


(defn param-names [params]
  "Names bound by a parameter list: (param-names '[a [b 1] #* c]) => [\"a\" \"b\" \"c\"]"
  (setv out [])
  (for [p params]
    (cond (and (isinstance p Symbol) (not-in (str p) #("/" "*"))) (.append out (str p))
          (isinstance p List) (.extend out (param-names (cut p 0 1)))
          (= (_head p) "unpack-iterable") (.extend out (param-names [(get p 1)]))
          (= (_head p) "unpack-mapping") (.extend out (param-names [(get p 1)]))
          (= (_head p) "annotate") (.extend out (param-names [(get p 1)]))))
  out)


;; ---------------------------------------------------------------- the rewrite

(defclass Scope []
  "One function being rewritten: its frame variable and which names it owns."
  (defn __init__ [self frame params owned nonlocals globals]
    (setv self.frame frame
          self.params params
          self.owned owned
          self.nonlocals nonlocals
          self.globals globals
          self.closures 0
          self.returns-escape False)))


(defclass Rewriter []
  "Rewrites one defstaged body. `filename` names the .hy file in error locations."

  (defn __init__ [self filename [prefix "_hyt"]]
    (setv self.filename filename
          self.prefix prefix
          self.placed #{}
          self.scopes []
          self.position #(0 0)))

  (defn where [self [form None]]
    "\"file.hy:LINE:COL\" of `form`, or of the nearest enclosing form with a position."
    (when (and form (getattr form "start_line" None))
      (setv self.position #(form.start_line form.start_column)))
    (setv [line col] self.position)
    f"{self.filename}:{line}:{col}")

  (defn scope [self] (get self.scopes -1))

  (defn rt [self name]
    "`_hyt.NAME` (under this rewrite's prefix): a name of hytorch.control in generated code."
    (Expression [(Symbol ".") (Symbol self.prefix) (Symbol name)]))

  (defn internal [self name]
    "A variable of the rewrite's own: `_hyt_NAME` under this rewrite's prefix."
    (Symbol f"{self.prefix}_{name}"))

  (defn frame-of [self name]
    "The frame symbol of the function that owns variable `name`."
    (for [s (reversed self.scopes)]
      (when (not-in name s.nonlocals)
        (return s.frame)))
    (. (get self.scopes 0) frame))

  (defn function-body [self params body]
    "The rewritten statements of a function with `params` and `body` (its docstring first)."
    (when (and (> (len body) 1) (isinstance (get body 0) String))
      (return [(get body 0) #* (self.function-body params (cut body 1 None))]))
    (setv frame (self.internal f"frame_{(len self.scopes)}")
          globals (_declared body "global")
          nonlocals (_declared body "nonlocal")
          params (set (param-names params))
          owned (lfor n (assigned-names body)
                      :if (not-in n (| params globals nonlocals))
                      n))
    (.append self.scopes (Scope frame params owned nonlocals globals))
    (setv rewritten (lfor f body (self.rewrite f))
          scope (.pop self.scopes)
          inits (if owned [`(setv ~@(sum (lfor n owned [(Symbol n) (self.rt "UNBOUND")]) []))] []))
    ;; The top-level function imports the runtime itself, so it also works as a method.
    (setv prelude [#* (if self.scopes [] [`(import hytorch.control :as ~(Symbol self.prefix))])
                   `(setv ~frame (~(self.rt "Frame"))) #* inits]
          caught (self.internal "return"))
    (if scope.returns-escape
      [#* prelude
       `(try (do ~@rewritten)
          (except [~caught ~(self.rt "Return")]
            (if (is (. ~caught frame) ~frame) (. ~caught value) (raise))))]
      [#* prelude #* rewritten]))

  (defn rewrite-all [self forms]
    (lfor f forms (self.rewrite f)))

  (defn rewrite [self form]
    "The staged rewrite of one (macro-expanded) form; new forms get its source position."
    (setv result (self.rewrite-form form))
    (when (getattr form "start_line" None)
      (self.place result form))
    result)

  (defn place [self model form]
    "Give the forms the rewrite made (quasiquoted in this file, so they carry this file's
    positions) the source position of `form`, leaving alone the forms already placed."
    (when (and (isinstance model hy.models.Object) (not-in (id model) self.placed))
      (.add self.placed (id model))
      (for [attr #("start_line" "start_column" "end_line" "end_column")]
        (setattr model attr (getattr form attr)))
      (when (isinstance model hy.models.Sequence)
        (for [child model] (self.place child form)))))

  (defn rewrite-form [self form]
    (self.where form)
    (setv head (_head form))
    (cond
      (in head _OPAQUE) form
      (= head "if") (self.rewrite-if form)
      (= head "while") (self.rewrite-while form)
      (= head "for") (self.rewrite-for form)
      (= head "setv") (self.rewrite-setv form)
      (= head "setx") (self.rewrite-setx form)
      (= head "try") (self.rewrite-try form)
      (= head "raise") (self.rewrite-raise form)
      (= head "assert") (self.rewrite-assert form)
      (in head _AUGMENTED) (self.rewrite-augmented form)
      (= head "fn") (self.rewrite-fn form)
      (= head "defn") (self.rewrite-defn form)
      (= head "print") `(~(self.rt "stage-print") ~@(self.rewrite-all (cut form 1 None)))
      (= head ".format") `(~(self.rt "stage-format") ~@(self.rewrite-all (cut form 1 None)))
      (in head #("and" "or")) (self.rewrite-logic form)
      (= head "not") `(~(self.rt "stage-not") ~@(self.rewrite-all (cut form 1 None)))
      (and (in head _CHAINABLE) (> (len form) 3)) (self.rewrite-chain form)
      (in head #("range" "enumerate" "len")) `(~(self.rt head) ~@(self.rewrite-all (cut form 1 None)))
      (= head "return") (self.rewrite-return form)
      (in head #("break" "continue")) `(~(self.rt f"loop-{head}") ~(self.where form))
      (in head _UNSUPPORTED) `(~(self.rt "unsupported") ~head ~(self.where form))
      (isinstance form #(Expression List Tuple Set Dict))
        (_rebuild form (self.rewrite-all form))
      True form))

  (defn closure [self names params body]
    "`(fn PARAMS (nonlocal NAMES) BODY)`, rewritten one closure deeper."
    (setv scope (self.scope))
    (+= scope.closures 1)
    (try
      (setv body (self.rewrite-all body))
      (finally (-= scope.closures 1)))
    (setv globals (lfor n names :if (in n scope.globals) (Symbol n))
          locals (lfor n names :if (not-in n scope.globals) (Symbol n)))
    `(fn ~params
       ~@(if globals [`(global ~@globals)] [])
       ~@(if locals [`(nonlocal ~@locals)] [])
       ~@(or body ['None])))

  (defn vars-form [self names]
    "A `_hyt.Vars` giving the runtime the names and closures to read and write them."
    (if (not names)
      'None
      (do (setv syms (lfor n names (Symbol n)))
          `(~(self.rt "Vars") [~@(lfor n names (String n))]
                      (fn [] [~@syms])
                      ~(self.setter names)))))

  (defn setter [self names]
    (setv scope (self.scope)
          globals (lfor n names :if (in n scope.globals) (Symbol n))
          locals (lfor n names :if (not-in n scope.globals) (Symbol n)))
    (setv values (self.internal "values"))
    `(fn [~values]
       ~@(if globals [`(global ~@globals)] [])
       ~@(if locals [`(nonlocal ~@locals)] [])
       (setv [~@(lfor n names (Symbol n))] ~values)))

  (defn _reads [self forms names]
    (setv seen (mentioned-names forms))
    `[~@(lfor n names :if (in n seen) (String n))])

  (defn _tracked [self forms]
    "Names `forms` assign that belong to a function being rewritten."
    (setv scope (self.scope))
    (lfor n (assigned-names forms)
          :if (or (in n scope.nonlocals) (in n scope.globals)
                  (any (gfor s self.scopes (or (in n s.owned) (in n s.params)))))
          n))

  (defn rewrite-if [self form]
    (setv [_ test then else] form
          where (self.where form)
          names (self._tracked [then else])
          both (lfor n (assigned-names [then]) :if (in n (assigned-names [else])) (String n)))
    `(~(self.rt "stage-if") ~(. (self.scope) frame) ~(self.rewrite test)
                    ~(self.closure names [] [then]) ~(self.closure names [] [else])
                    ~(self.vars-form names) ~where [~@both]))

  (defn else-closure [self names forms]
    "The closure of a loop's `(else ...)` clause, or None when it has none."
    (if (is forms None) 'None (self.closure names [] forms)))

  (defn rewrite-while [self form]
    (setv where (self.where form)
          [_ test #* body] form
          names (self._tracked [test #* body])
          [body else-forms] (_split-else body))
    `(~(self.rt "stage-while") ~(. (self.scope) frame)
                       ~(self.closure names [] [test]) ~(self.closure names [] body)
                       ~(self.vars-form names) ~(self._reads [test] names) ~(self._reads body names)
                       ~where ~(self.else-closure names else-forms)
                       [~@(lfor n (assigned-names [test]) (String n))]))

  (defn rewrite-for [self form]
    (setv where (self.where form)
          [_ clauses #* body] form
          clauses (list clauses)
          [body else-forms] (_split-else body))
    (when (or (% (len clauses) 2) (any (gfor c clauses (isinstance c Keyword))))
      (return `(~(self.rt "unsupported") "for with :async/:if/:do/:setv clauses" ~where)))
    (when (> (len clauses) 2)
      ;; (for [a as b bs] ... (else ...)) is (for [a as] (for [b bs] ...) (else ...))
      (return (self.rewrite (.replace `(for [~@(cut clauses 0 2)]
                                         (for [~@(cut clauses 2 None)] ~@body)
                                         ~@(if (is else-forms None) [] [`(else ~@else-forms)]))
                                      form))))
    (setv [target iterable] clauses
          names (self._tracked [form])
          item (self.internal "item"))
    `(~(self.rt "stage-for") ~(. (self.scope) frame) ~(self.rewrite iterable)
                     ~(self.closure names [item] [`(setv ~target ~item) #* body])
                     ~(self.vars-form names) ~(self._reads [target #* body] names) ~where
                     ~(self.else-closure names else-forms)))

  (defn rewrite-try [self form]
    "`(try BODY... CLAUSES...)` runs while staging, so its handlers catch what the body raises
    then; the body is inside `_hyt.try-body`, a StagingError if it stages what may fail when
    the compiled code runs (nothing catches there). Staging's own exceptions pass through."
    (setv where (self.where form)
          items (list (cut form 1 None))
          n (next (gfor [i x] (enumerate items) :if (in (_head x) _TRY-CLAUSES) i) (len items))
          [body clauses] [(cut items 0 n) (cut items n None)]
          catches (in "except" (lfor c clauses (_head c))))
    `(try (with [(~(self.rt "try-body") ~where)] ~@(or (self.rewrite-all body) ['None]))
          ~@(if catches [`(except [~(self.rt "STAGING-SIGNALS")] (raise))] [])
          ~@(lfor c clauses (self.rewrite-clause c))))

  (defn rewrite-clause [self clause]
    "An `except` (its binding list kept), `else` or `finally` clause with its body rewritten."
    (setv [head #* items] clause
          kept (if (in (str head) #("except" "except*")) 1 0))
    (_rebuild clause [head #* (cut items 0 kept) #* (self.rewrite-all (cut items kept None))]))

  (defn rewrite-raise [self form]
    "`(raise EXC)` raises EXC marked as the program's own, so that raised under staged
    control flow it becomes a `raise` of the compiled code."
    (if (> (len form) 1)
      (_rebuild form [(get form 0) `(~(self.rt "raising") ~(self.rewrite (get form 1)) ~(self.where form))
                      #* (self.rewrite-all (cut form 2 None))])
      form))

  (defn rewrite-assert [self form]
    "`(assert TEST MESSAGE)` as `(if TEST None (raise (AssertionError MESSAGE)))`, so that a
    staged test is checked by the compiled code."
    (setv [_ test #* message] form)
    (self.rewrite (.replace `(if ~test None (raise (AssertionError ~@message))) form)))

  (defn assign [self name value [form 'setv]]
    (setv sym (Symbol name))
    `(~form ~sym (.assign ~(self.frame-of name) ~name ~value)))

  (defn rewrite-setx [self form]
    "`(setx NAME VALUE)`, Python's `:=`: an assignment that is an expression."
    (setv [_ target value] form)
    (self.assign (str target) (self.rewrite value) 'setx))

  (defn rewrite-setv [self form]
    (setv items (list (cut form 1 None)))
    (when (or (% (len items) 2) (any (gfor x items (isinstance x Keyword))))
      (return (_rebuild form (self.rewrite-all form))))
    (setv out [])
    (for [[target value] (zip (cut items 0 None 2) (cut items 1 None 2))]
      (setv value (self.rewrite value))
      (cond
        (and (isinstance target Symbol) (not-in "." (str target)))
          (.append out (self.assign (str target) value))
        (isinstance target #(List Tuple))
          (do (setv temps {})
              (defn temp-pattern [t]
                (cond (and (isinstance t Symbol) (not-in "." (str t)))
                        (do (setv s (hy.gensym (str t))) (setv (get temps (str t)) s) s)
                      (isinstance t #(List Tuple)) (_rebuild t (lfor x t (temp-pattern x)))
                      (= (_head t) "unpack-iterable") `(unpack-iterable ~(temp-pattern (get t 1)))
                      True t))
              (.append out `(setv ~(temp-pattern target) ~value))
              (for [[name temp] (.items temps)]
                (.append out (self.assign name temp))))
        True (.append out `(setv ~target (~(self.rt "store-outside-blocks") ~value ~(self.where target))))))
    (if (= (len out) 1) (get out 0) `(do ~@out None)))

  (defn rewrite-augmented [self form]
    (setv [op target #* values] form)
    (self.rewrite-setv (.replace `(setv ~target (~(Symbol (get _AUGMENTED (str op))) ~target ~@values)) form)))

  (defn rewrite-fn [self form]
    (setv [_ params #* body] form)
    (if (isinstance params List)
      `(fn ~params ~@(self.function-body params body))
      form))

  (defn rewrite-defn [self form]
    (setv items (list (cut form 1 None))
          decorators (if (isinstance (get items 0) List) [(.pop items 0)] []))
    (if (and (>= (len items) 2) (isinstance (get items 0) Symbol) (isinstance (get items 1) List))
      (do (setv [name params #* body] items)
          `(defn ~@decorators ~name ~params ~@(self.function-body params body)))
      form))

  (defn rewrite-logic [self form]
    (setv [op first #* rest] form)
    (if (not rest)
      (self.rewrite first)
      `(~(self.rt f"stage-{op}") ~(self.rewrite first)
         ~@(lfor r rest (self.closure [] [] [r])))))

  (defn rewrite-chain [self form]
    (setv [op #* operands] form)
    (self.rewrite (.replace `(and ~@(lfor [a b] (zip operands (cut operands 1 None)) `(~op ~a ~b))) form)))

  (defn rewrite-return [self form]
    (setv scope (self.scope)
          value (if (> (len form) 1) (self.rewrite (get form 1)) 'None))
    (if scope.closures
      (do (setv scope.returns-escape True)
          `(~(self.rt "return-from") ~scope.frame ~value ~(self.where form)))
      `(return ~value))))


;; ---------------------------------------------------------------- the macro's expansion

(defn _source-text [compiler form]
  "The text of `form` in its file, or its printed form when the file is not at hand."
  (setv source (getattr compiler "source" None))
  (if (and source (getattr form "start_line" None) (getattr form "end_line" None))
    (do (setv lines (.splitlines source)
              chunk (cut lines (- form.start_line 1) form.end_line))
        (setv (get chunk -1) (cut (get chunk -1) 0 form.end_column)
              (get chunk 0) (cut (get chunk 0) (- form.start_column 1) None))
        (.join "\n" chunk))
    (cut (hy.repr form) 1 None)))


(defn expand-defstaged [compiler name params body]
  "What `(defstaged NAME PARAMS BODY...)` is: the plain `defn`, decorated with its staged
  rewrite (`_staged_NAME`), and the rewrite's Python for `.staged-source`. It is compiled
  here, with room for deep recursion: code nested 100 `if`s deep takes more than Python's
  default limit."
  (setv form compiler.this
        staged-name (Symbol f"_staged_{(hy.mangle name)}"))
  (with [(deeper-recursion)]
    (setv expanded (lfor f body (expand-all f compiler.module))
          taken (symbol-names [params #* expanded])
          expanded (lfor f expanded (lower-lets f None taken))
          rewriter (Rewriter (or compiler.filename "<string>")
                             (internal-prefix [params #* expanded]))
          where (rewriter.where form)
          staged (.compile compiler (.replace `(defn ~staged-name ~params
                                                 ~@(rewriter.function-body params expanded))
                                              form))
          ;; No module-level name of the rewrite's own: the decorator is reached through `hy.I`.
          plain (.compile compiler (.replace `(defn [(hy.I.hytorch.staged
                                                       ~staged-name ~(hy.mangle name)
                                                       ~(_source-text compiler form)
                                                       ~(_python-of staged name)
                                                       ~where)]
                                                ~name ~params ~@body)
                                             form)))
    (+ staged plain)))


(defn _python-of [result name]
  "The Python of the staged function compiled into `result`, as `hy2py` shows it, under the
  name `name`. Hy decides between `nonlocal` and `global` once the module is compiled; the
  staged function, compiled whole, can be decided now."
  (setv function (get result.stmts -1))
  (ResolveOuterVars.generic-visit (ResolveOuterVars) function)
  (setv [header #* lines] (.splitlines (ast.unparse function)))
  (.join "\n" [(.replace header (str function.name) (hy.mangle name) 1) #* lines]))
