"Python `str.format` strings, as used by the IR's `printf` (and staged `.format`), split into
pieces the C runtime prints exactly as Python would.

  (format-pieces \"Loss: {:.6f} at {}\" [\"float\" \"int\"])
  ; => [[\"text\" \"Loss: \"] [\"float\" 0 <Spec f width=0 precision=6>] [\"text\" \" at \"]
  ;     [\"int\" 1 <Spec d width=0 precision=6>]]

A piece is [\"text\" S], [\"int\" ARG SPEC] (the argument as an int64), [\"float\" ARG SPEC]
(the argument as a double) or [\"bool\" ARG] (True/False). A spec Python refuses raises
Python's own ValueError; one staged code cannot print exactly raises ValueError saying so.
backend/printf.hy turns specs and text into C for the runtime (c_runtime/ht_print.h)."

(import re sys string [Formatter])

;; Python's format-spec grammar: [[fill]align][sign][z][#][0][width][grouping][.precision][type]
(setv _SPEC (re.compile #[[(?:(?P<fill>.)?(?P<align>[<>=^]))?(?P<sign>[-+ ])?(?P<z>z)?(?P<alt>#)?(?P<zero>0)?(?P<width>\d+)?(?P<group>[,_])?(?:\.(?P<precision>\d+))?(?P<type>[a-zA-Z%])?\Z]] re.S))
(setv _FLOAT-TYPES #{"f" "F" "e" "E" "g" "G" "%"})
;; Python refuses a larger precision ("precision too big"), and runs out of memory building a
;; string as wide as a much larger width: staged code refuses such a width.
(setv _INT-MAX (- (** 2 31) 1))


(defclass Spec []
  "One field's format spec with Python's defaults resolved: fill (one character), align,
  sign, alt ('#'), z, width, precision and the C runtime's type: d, f F e E g G %, or r (a
  float's repr, the empty spec)."
  (defn __init__ [self fill align sign alt z width precision type]
    (setv self.fill fill self.align align self.sign sign self.alt alt self.z z
          self.width width self.precision precision self.type type))
  (defn __repr__ [self] f"<Spec {self.type} width={self.width} precision={self.precision}>"))


(defn _size [digits]
  "The number a width or precision spells, or just over sys.maxsize when it is that large."
  (setv significant (.lstrip digits "0"))
  (if (> (len significant) 19) (+ sys.maxsize 1) (int (or significant "0"))))


(defn _rebuilt [m width precision]
  "The spec `m` matched, with the given width and precision text."
  (.join "" [#* (gfor g ["fill" "align" "sign" "z" "alt" "zero"] (or (.group m g) ""))
             (or width "") (or (.group m "group") "") (if precision f".{precision}" "")
             (or (.group m "type") "")]))


(defn _check-with-python [m kind]
  "Raise Python's own ValueError when `format` refuses this spec for a value of `kind`.
  A sample is formatted with a small width and precision (Python checks their size while
  parsing), so a huge valid width does not build a huge string here."
  (setv width (.group m "width") precision (.group m "precision")
        small-width (if (and width (<= (_size width) sys.maxsize)) (str (min (_size width) 9)) width)
        small-precision (if (and precision (<= (_size precision) _INT-MAX))
                          (str (min (_size precision) 9))
                          precision))
  (format (get {"int" 0 "float" 0.0 "bool" True} kind) (_rebuilt m small-width small-precision)))


(defn _unsupported [spec why]
  (ValueError f"format spec {spec !r} is not supported in staged code ({why})"))


(defn _c-type [m kind spec]
  "The runtime's type letter for a field of `kind` (\"int\" or \"float\"; a bool's non-empty
  spec formats it as an int, as Python does)."
  (setv type (or (.group m "type") ""))
  (cond
    (in type _FLOAT-TYPES) type
    (and (= kind "int") (in type #("" "d"))) "d"
    (and (= kind "float") (= type "") (.group m "precision"))
      (raise (_unsupported spec "a precision needs a type, e.g. {:.4f} or {:.4g}"))
    (and (= kind "float") (= type "") (.group m "alt"))
      (raise (_unsupported spec "'#' needs a type such as f, e or g"))
    (and (= kind "float") (= type "")) "r"
    True (raise (_unsupported spec f"type {type !r}"))))


(defn parse-spec [spec kind]
  "The Spec of `{:spec}` for a value of `kind`: (parse-spec \"08.3f\" \"float\") is fill 0,
  align =, width 8, precision 3, type f. Raises ValueError if Python or staged code refuses."
  (setv m (_SPEC.match spec))
  (when (not m)
    (raise (ValueError f"format spec {spec !r} is not valid")))
  (_check-with-python m kind)
  (when (.group m "group")
    (raise (_unsupported spec "digit grouping")))
  (when (> (_size (or (.group m "width") "0")) _INT-MAX)
    (raise (ValueError f"format spec {spec !r}: the width is too large (over 2**31-1)")))
  (setv type (_c-type m (if (= kind "bool") "int" kind) spec)
        fill (.group m "fill")
        align (.group m "align")
        zero (and (.group m "zero") (not fill)))
  (when (and fill (<= 0xD800 (ord fill) 0xDFFF))
    (raise (ValueError f"format spec {spec !r}: its fill, a lone surrogate, cannot be printed")))
  ;; Python: '0' without an explicit fill pads with 0s, after the sign unless aligned.
  (Spec :fill (or fill (if zero "0" " "))
        :align (or align (if zero "=" ">"))
        :sign (or (.group m "sign") "-")
        :alt (bool (.group m "alt"))
        :z (bool (.group m "z"))
        :width (_size (or (.group m "width") "0"))
        :precision (_size (or (.group m "precision") "6"))
        :type type))


(defn _field [spec conversion kind index]
  "The piece for one `{!conversion:spec}` field whose argument has `kind`."
  (cond
    (not-in kind #("int" "float" "bool"))
      (raise (ValueError f"a {kind} cannot be formatted in staged code"))
    (not-in conversion #(None "s" "r"))
      (raise (ValueError f"conversion !{conversion} is not supported in staged code"))
    (and conversion spec)
      ;; str() and repr() of a number are its empty-spec format; a spec would then pad text
      (raise (_unsupported spec f"a conversion !{conversion} with a format spec"))
    (and (= kind "bool") (not spec)) ["bool" index]
    True (do (setv s (parse-spec spec kind))
             [(if (= s.type "d") "int" "float") index s])))


(defn format-fields [fmt nargs]
  "The pieces of a format string for `nargs` arguments as str.format reads them: #(text
  index spec conversion), index None after the last field. ValueError with Python's message
  for mixed numbering or too few arguments; ValueError for a named field or a nested field in
  a spec, which staged code does not support.
  (list (format-fields \"a{}b{:>3}\" 2)) => [#(\"a\" 0 \"\" None) #(\"b\" 1 \">3\" None)]"
  (setv auto 0 numbering None)
  (for [[text field spec conversion] (.parse (Formatter) fmt)]
    (when (is field None)
      (yield #(text None None None))
      (continue))
    (setv this (if (= field "") "automatic" "manual"))
    (when (and numbering (!= numbering this))
      ;; Python's own message for "{} {0}"
      (raise (ValueError (if (= this "manual")
                           "cannot switch from automatic field numbering to manual field specification"
                           "cannot switch from manual field specification to automatic field numbering"))))
    (setv numbering this)
    (cond (= field "") (do (setv index auto) (+= auto 1))
          (.isdigit field) (setv index (int field))
          True (raise (ValueError f"named field {{{field}}} is not supported in staged code; use {{}}")))
    (when (>= index nargs)
      ;; Python's message (an IndexError there)
      (raise (ValueError f"Replacement index {index} out of range for positional args tuple")))
    (when (in "{" (or spec ""))
      (raise (ValueError "nested fields in a format spec are not supported")))
    (yield #(text index (or spec "") conversion))))


(defn format-pieces [fmt kinds]
  "Split `fmt` into print pieces for arguments of the given kinds (\"int\" \"float\" \"bool\")."
  (setv pieces [])
  (for [[text index spec conversion] (format-fields fmt (len kinds))]
    (when text
      (.append pieces ["text" text]))
    (when (is-not index None)
      (.append pieces (_field spec conversion (get kinds index) index))))
  pieces)
