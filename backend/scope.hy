"Lexical scopes of IR names and the C names they render to.

IR names are reused: a block restarts numbering, an inner `let` shadows an outer one. Each
binding therefore gets its own C name, and lookups follow the block structure:

  (setv names (CNames) outer (Scope) inner (.child outer))
  (.bind outer \"x2\" (Binding (.fresh names \"x2\") \"int\"))
  (.bind inner \"x2\" (Binding (.fresh names \"x2\") \"float\"))
  (. (.lookup inner \"x2\") cname)   ; => \"v_x2_1\""

(import hytorch.errors [IRError])


(defclass Binding []
  "What an IR name stands for: its C expression and its type (and more for tensors)."
  (defn __init__ [self cname type #** info]
    (setv self.cname cname self.type type self.info info))
  (defn __repr__ [self] f"<{self.cname}: {self.type}>"))


(defclass Scope []
  "A block's bindings, falling back to the enclosing block's."
  (defn __init__ [self [parent None]]
    (setv self.parent parent self.table {}))

  (defn child [self] (Scope self))

  (defn bind [self name binding]
    (setv (get self.table (str name)) binding)
    binding)

  (defn inside [self ancestor]
    "Whether this scope is `ancestor` or one of its blocks (however deep)."
    (setv scope self)
    (while (is-not scope None)
      (when (is scope ancestor) (return True))
      (setv scope scope.parent))
    False)

  (defn lookup [self name]
    (setv scope self)
    (while (is-not scope None)
      (when (in (str name) scope.table)
        (return (get scope.table (str name))))
      (setv scope scope.parent))
    (raise (IRError f"`{name}` is used but not bound by an enclosing let or parameter"))))


(setv C-PREFIX "v_")   ; no C keyword, runtime name or libc name starts so (tests check)


(defn _c-identifier-char [c]
  (or (and (.isascii c) (.isalnum c)) (= c "_")))


(defclass CNames []
  "C identifiers for IR names, each issued once: x2 is v_x2, a later x2 v_x2_1, and an IR
  name `x2_1` bound after that v_x2_1_1. Characters C does not allow become `_`; the prefix
  keeps every name apart from C's keywords and the runtime's and libc's names."
  (defn __init__ [self]
    (setv self.issued (set) self.next-suffix {}))

  (defn fresh [self name]
    "A C name for IR name `name` that no other has: (.fresh (CNames) \"a-b\") => \"v_a_b\""
    (setv base (+ C-PREFIX (.join "" (gfor c (str name) (if (_c-identifier-char c) c "_"))))
          n (.get self.next-suffix base 0)
          cname (if n f"{base}_{n}" base))
    (while (in cname self.issued)
      (+= n 1)
      (setv cname f"{base}_{n}"))
    (setv (get self.next-suffix base) (+ n 1))
    (.add self.issued cname)
    cname))
