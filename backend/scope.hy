"Lexical scopes of IR names and the C names they render to.

IR names are reused: a block restarts numbering, an inner `let` shadows an outer one. Each
binding therefore gets its own C name, and lookups follow the block structure:

  (setv names (CNames) outer (Scope) inner (.child outer))
  (.bind outer \"x2\" (Binding (.fresh names \"x2\") \"int\"))
  (.bind inner \"x2\" (Binding (.fresh names \"x2\") \"float\"))
  (. (.lookup inner \"x2\") cname)   ; => \"x2_1\""

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

  (defn lookup [self name]
    (setv scope self)
    (while (is-not scope None)
      (when (in (str name) scope.table)
        (return (get scope.table (str name))))
      (setv scope scope.parent))
    (raise (IRError f"`{name}` is used but not bound by an enclosing let or parameter"))))


(defclass CNames []
  "Unique C identifiers for IR names: x2, then x2_1, x2_2 for later bindings of x2."
  (defn __init__ [self]
    (setv self.used {}))

  (defn fresh [self name]
    (setv base (.join "" (gfor c (str name) (if (or (.isalnum c) (= c "_")) c "_")))
          base (if (and base (not (.isdigit (get base 0)))) base (+ "v" base))
          n (.get self.used base 0))
    (setv (get self.used base) (+ n 1))
    (if (= n 0) base f"{base}_{n}")))
