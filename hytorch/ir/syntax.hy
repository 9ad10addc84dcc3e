"The IR as data, and its text form (see shared/ir.md).

A node is a Python list; `Sym` is a symbol; a plain `str` is a string literal; numbers,
`True`, `False` and `None` are themselves. Printing and reading are inverse:

  (print-ir (parse-ir \"(def f (in) (begin (begin (let x0 (* in 1) x0))))\"))
  ; => \"(def f (in) (begin (begin (let x0 (* in 1) x0))))\""

(import re
        hytorch.errors [IRSyntaxError])


(defclass Sym [str]
  "An IR symbol such as `x0`, `in` or `relu`. Compares equal to the plain string."
  (defn __repr__ [self] f"Sym({(str.__repr__ self)})"))


(defn chain-lets [node]
  "The [name rhs] pairs of a chain of right-nested lets, and what follows them; iterative, as
  a program's lets nest as deep as it is long:
  (chain-lets (parse-ir \"(let a 1 (let b 2 a))\")) => #([[a 1] [b 2]] a)"
  (setv out [])
  (while (and (isinstance node list) (= (len node) 4) (= (get node 0) "let"))
    (.append out [(get node 1) (get node 2)])
    (setv node (get node 3)))
  #(out node))


(defn chain-of [lets result]
  "The chain of lets [[name rhs] ...] ending in `result`: chain-lets' inverse."
  (setv node result)
  (for [[name rhs] (reversed lets)]
    (setv node [(Sym "let") name rhs node]))
  node)


(setv _ESCAPES {"\\" "\\\\"  "\"" "\\\""  "\n" "\\n"  "\t" "\\t"  "\r" "\\r"})
(setv _UNESCAPES {"\\" "\\"  "\"" "\""  "n" "\n"  "t" "\t"  "r" "\r"})
(setv _SPECIAL-FLOATS {"inf" (float "inf")  "-inf" (float "-inf")  "nan" (float "nan")})
(setv INT64-MIN (- (** 2 63))  INT64-MAX (- (** 2 63) 1))   ; the IR's ints are int64


(defn real-number? [x]
  "Whether the atom `x` is an int or a float (not a bool, a symbol or a string):
  (real-number? 0.5) => True, (real-number? True) => False"
  (and (isinstance x #(int float)) (not (isinstance x bool))))


(defn quote-string [s]
  "IR text of a string literal: (quote-string \"a\\tb\") => \"\\\"a\\\\tb\\\"\""
  (+ "\"" (.join "" (gfor c s (cond (in c _ESCAPES) (get _ESCAPES c)
                                   (< (ord c) 32) f"\\x{(ord c) :02x}"
                                   True c)))
     "\""))


(defn print-float [x]
  "Floats print as Python's repr, so they read back exactly: (print-float 5e-4) => \"0.0005\""
  (cond (!= x x) "nan"
        (= x (float "inf")) "inf"
        (= x (float "-inf")) "-inf"
        True (repr x)))


(defn print-atom [x]
  (cond (isinstance x Sym) (str x)
        (isinstance x bool) (if x "True" "False")
        (is x None) "None"
        (isinstance x int) (str x)
        (isinstance x float) (print-float x)
        (isinstance x str) (quote-string x)
        True (raise (TypeError f"not an IR value: {x !r}"))))


(defn print-ir [node]
  "The text of an IR node: (print-ir [(Sym \"+\") (Sym \"x0\") 1]) => \"(+ x0 1)\"
  Iterative, as a program's chain of lets nests as deep as it is long."
  (setv out [] stack [[node]])   ; each entry: the items of a list still to print
  (while stack
    (setv items (get stack -1))
    (if (not items)
      (do (.pop stack)
          (when stack (.append out ")")))
      (do (setv x (.pop items 0))
          (when (and out (!= (get out -1) "(")) (.append out " "))
          (if (isinstance x #(list tuple))
            (do (.append out "(") (.append stack (list x)))
            (.append out (print-atom x))))))
  (.join "" out))


(setv _TOKEN (re.compile #[[\s+|(?P<open>\()|(?P<close>\))|(?P<string>"(?:[^"\\]|\\.)*")|(?P<atom>[^\s()"]+)]] re.S))
(setv _INT (re.compile #[[[-+]?\d+\Z]]))
(setv _FLOAT (re.compile #[[[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?\Z]]))


(defn _position [text offset]
  "1-based line and column of `offset` in `text`."
  (setv line (+ 1 (.count text "\n" 0 offset)))
  #(line (- offset (.rfind text "\n" 0 offset))))


(defn _syntax-error [text offset message]
  (IRSyntaxError message #* (_position text offset) offset))


(defn _unescape [body text offset]
  (setv out [] i 0)
  (while (< i (len body))
    (setv c (get body i))
    (cond (!= c "\\") (do (.append out c) (+= i 1))
          (= (get body (+ i 1)) "x")
            (do (setv digits (cut body (+ i 2) (+ i 4)))
                (_check-hex digits text (+ offset i))
                (.append out (chr (int digits 16)))
                (+= i 4))
          True
            (do (setv e (get body (+ i 1)))
                ;; snek-LMS left unknown escapes alone; keep them as written.
                (.append out (.get _UNESCAPES e (+ "\\" e)))
                (+= i 2))))
  (.join "" out))


(defn _check-hex [digits text offset]
  (when (not (and (= (len digits) 2) (all (gfor d digits (in d "0123456789abcdefABCDEF")))))
    (raise (_syntax-error text offset f"bad \\x escape {digits !r} in a string"))))


(defn _read-int [token]
  "An integer literal's value; ValueError naming it when it does not fit in 64 bits."
  (setv significant (.lstrip token "+-0")
        x (when (<= (len significant) 19)   ; (and Python's int refuses over 4300 digits)
            (* (if (.startswith token "-") -1 1) (int (or significant "0")))))
  (when (or (is x None) (not (<= INT64-MIN x INT64-MAX)))
    (setv shown (if (> (len token) 40) (+ (cut token 0 40) "...") token))
    (raise (ValueError f"integer literal {shown} does not fit in 64 bits (-2**63 .. 2**63-1)")))
  x)


(defn read-atom [token]
  "The value of one atom token: (read-atom \"0.0005\") => 0.0005, (read-atom \"x1\") => (Sym \"x1\").
  ValueError for an integer that does not fit in 64 bits."
  (cond (_INT.match token) (_read-int token)
        (_FLOAT.match token) (float token)
        (in token _SPECIAL-FLOATS) (get _SPECIAL-FLOATS token)
        (= token "True") True
        (= token "False") False
        (= token "None") None
        True (Sym token)))


(defn parse-ir [text]
  "Read one IR form from `text`; raises IRSyntaxError naming the position of a problem.

    (parse-ir \"(+ x0 1)\") => [(Sym \"+\") (Sym \"x0\") 1]"
  (setv stack [[]] opens [] pos 0 end (len text))
  (while (< pos end)
    (setv m (_TOKEN.match text pos))
    (when (not m)
      (raise (_syntax-error text pos "unterminated string literal")))
    (cond (.group m "open") (do (.append opens pos) (.append stack []))
          (.group m "close")
            (do (when (not opens)
                  (raise (_syntax-error text pos "unexpected ')' with no matching '('")))
                (.pop opens)
                (setv done (.pop stack))
                (.append (get stack -1) done))
          (.group m "string")
            (.append (get stack -1) (_unescape (cut (.group m "string") 1 -1) text (+ pos 1)))
          (.group m "atom")
            (.append (get stack -1)
                     (try (read-atom (.group m "atom"))
                          (except [e ValueError] (raise (_syntax-error text pos (str e)))))))
    (setv pos (.end m)))
  (when opens
    (raise (_syntax-error text (get opens -1) "'(' is never closed")))
  (setv forms (get stack 0))
  (cond (not forms) (raise (_syntax-error text 0 "empty IR text"))
        (> (len forms) 1)
          (raise (_syntax-error text (_offset-of-second-form text) "text after the end of the first form"))
        True (get forms 0)))


(defn _offset-of-second-form [text]
  "Offset where the second top-level form starts (for the error message)."
  (setv depth 0 started False pos 0)
  (for [m (_TOKEN.finditer text)]
    (setv pos (.start m))
    (cond (.group m "open") (do (when (and started (= depth 0)) (return pos))
                                (+= depth 1) (setv started True))
          (.group m "close") (-= depth 1)
          (or (.group m "string") (.group m "atom"))
            (do (when (and started (= depth 0)) (return pos)) (setv started True))))
  pos)
